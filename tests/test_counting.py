"""Assistant masks from real chat templates, counting, counts files and data loading."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_vocabtrim.counting import TokenCounts, count_tokens, vocab_hash
from hf_vocabtrim.data import load_chats
from hf_vocabtrim.masking import assistant_token_mask, has_generation_tags
from hf_vocabtrim.tiny import demo_chats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from count_throughput import count_naive  # noqa: E402

CHATS = [
    [
        {"role": "system", "content": 'You are terse. Use <b>HTML</b> & "quotes" when asked.'},
        {"role": "user", "content": "Say hi in 3 languages, with {{ braces }} and {% tags %}."},
        {"role": "assistant", "content": "Hi! Hola! 你好! 🙂 Also {{ braces }} and {% tags %} & <b>bold</b>."},
        {"role": "user", "content": "Now code?"},
        {"role": "assistant", "content": "```python\ndef f(x):\n    return {'a': x}  # <|not special|>\n```"},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": "You're welcome.\n\nBye."},
    ],
    [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ],
    [
        {"role": "user", "content": "Repeat: Repeat"},
        {"role": "assistant", "content": "Repeat"},
    ],
]


def _runs(ids: list[int], mask: list[bool]) -> list[list[int]]:
    runs, current = [], []
    for token, m in zip(ids, mask):
        if m:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("name", ["tiny_tokenizer", "qwen3_tokenizer", "gemma3_tokenizer"])
def test_assistant_mask_matches_assistant_content_exactly(name, request):
    tokenizer = request.getfixturevalue(name)
    assert not has_generation_tags(tokenizer)  # these templates: the template-agnostic path
    for chat in CHATS:
        ids, mask = assistant_token_mask(tokenizer, chat)
        contents = [m["content"] for m in chat if m["role"] == "assistant"]
        decoded = [tokenizer.decode(run) for run in _runs(ids, mask)]
        assert decoded == contents, (name, decoded, contents)
        # the user turn "Repeat: Repeat" is never mistaken for the assistant's "Repeat"
        assert (
            sum(mask) == sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in contents)
            or name != "tiny_tokenizer"
        )


def test_generation_tagged_template_uses_its_spans(tiny_tokenizer):
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' }}{% if m['role'] == 'assistant' %}"
        "{% generation %}{{ m['content'] + '<|im_end|>' }}{% endgeneration %}"
        "{% else %}{{ m['content'] + '<|im_end|>' }}"
        "{% endif %}{{ '\n' }}{% endfor %}"
    )
    assert has_generation_tags(tokenizer)
    ids, mask = assistant_token_mask(tokenizer, CHATS[1])
    # the template marks the end-of-turn token as assistant text too, as a training loss mask would
    assert tokenizer.decode(_runs(ids, mask)[0]) == "4<|im_end|>"


def test_fast_count_equals_naive_count(qwen3_tokenizer):
    rows = [{"messages": chat} for chat in CHATS] + demo_chats(50)
    fast = count_tokens(qwen3_tokenizer, rows, batch_size=7, progress=False)
    naive = count_naive(qwen3_tokenizer, rows)
    assert np.array_equal(fast.counts, naive)
    assert fast.num_conversations == len(rows) and fast.num_tokens == naive.sum()


def test_counts_round_trip_and_tokenizer_check(tiny_tokenizer, qwen3_tokenizer, tmp_path):
    counts = count_tokens(tiny_tokenizer, demo_chats(30), progress=False, source="demo")
    assert counts.mode == "assistant" and counts.vocab_size == len(tiny_tokenizer)
    assert set(counts.extra["special_ids"]) >= {tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id}
    for suffix in (".json", ".safetensors"):
        path = counts.save(tmp_path / f"counts{suffix}")
        back = TokenCounts.load(path)
        assert np.array_equal(back.counts, counts.counts) and back.metadata == counts.metadata
    counts.check_tokenizer(tiny_tokenizer)
    with pytest.raises(ValueError, match="Count again with the draft's own tokenizer"):
        counts.check_tokenizer(qwen3_tokenizer)
    assert vocab_hash(tiny_tokenizer) == counts.vocab_hash
    (tmp_path / "bad.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a counts file"):
        TokenCounts.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match=".json or .safetensors"):
        counts.save(tmp_path / "counts.txt")


def test_count_errors(tiny_tokenizer):
    with pytest.raises(ValueError, match="empty"):
        count_tokens(tiny_tokenizer, [], progress=False)
    only_users = [{"messages": [{"role": "user", "content": "hello"}]}] * 3
    with pytest.raises(ValueError, match="none of the 3 conversations has assistant turns"):
        count_tokens(tiny_tokenizer, only_users, progress=False)


def test_load_chats_formats(tmp_path, tiny_tokenizer):
    import datasets

    messages = [{"messages": CHATS[1]}]
    sharegpt = [{"conversations": [{"from": "human", "value": "What is 2+2?"}, {"from": "gpt", "value": "4"}]}]
    pairs = [{"prompt": "What is 2+2?", "response": "4"}]
    expected = CHATS[1]
    for rows in (messages, sharegpt, pairs):
        path = tmp_path / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        assert list(load_chats(path))[0]["messages"] == expected
        assert list(load_chats(rows))[0]["messages"] == expected
    datasets.Dataset.from_list(pairs * 4).to_parquet(str(tmp_path / "data.parquet"))
    assert len(load_chats(tmp_path / "data.parquet")) == 4
    streamed = load_chats(tmp_path / "data.jsonl", streaming=True)
    assert list(streamed)[0]["messages"] == expected
    (tmp_path / "corpus.txt").write_text("def f():\n    return 1\nprint(f())\n")
    text = load_chats(tmp_path / "corpus.txt")
    counts = count_tokens(tiny_tokenizer, text, progress=False)
    assert counts.mode == "text" and counts.num_tokens > 0
    custom = load_chats(
        [{"q": "What is 2+2?", "a": "4"}],
        columns=__import__("hf_vocabtrim.data").data.ChatColumns(prompt="q", response="a"),
    )
    assert list(custom)[0]["messages"] == expected
    with pytest.raises(ValueError, match="cannot tell the chat layout"):
        load_chats([{"foo": 1}])


def test_worker_processes_give_the_same_counts(tiny_tokenizer):
    rows = demo_chats(120)
    one = count_tokens(tiny_tokenizer, rows, batch_size=16, progress=False)
    two = count_tokens(tiny_tokenizer, rows, batch_size=16, num_proc=2, progress=False)
    assert np.array_equal(one.counts, two.counts) and one.num_conversations == two.num_conversations == 120
