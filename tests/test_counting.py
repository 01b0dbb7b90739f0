"""Assistant masks from real chat templates, counting, counts files and data loading."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hf_vocabtrim.commands import main
from hf_vocabtrim.data.chats import ChatColumns, load_chats
from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.data.counts import TokenCounts, vocab_hash
from hf_vocabtrim.data.masking import assistant_token_mask, has_generation_tags, render_batch_with_spans
from hf_vocabtrim.tiny import demo_chats
from tests.conftest import plain

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
        assert plain(list(load_chats(path))[0]["messages"]) == expected
        assert plain(list(load_chats(rows))[0]["messages"]) == expected
    datasets.Dataset.from_list(pairs * 4).to_parquet(str(tmp_path / "data.parquet"))
    assert len(load_chats(tmp_path / "data.parquet")) == 4
    streamed = load_chats(tmp_path / "data.jsonl", streaming=True)
    assert plain(list(streamed)[0]["messages"]) == expected
    (tmp_path / "corpus.txt").write_text("def f():\n    return 1\nprint(f())\n")
    text = load_chats(tmp_path / "corpus.txt")
    counts = count_tokens(tiny_tokenizer, text, progress=False)
    assert counts.mode == "text" and counts.num_tokens > 0
    custom = load_chats(
        [{"q": "What is 2+2?", "a": "4"}],
        columns=ChatColumns(prompt="q", response="a"),
    )
    assert plain(list(custom)[0]["messages"]) == expected
    with pytest.raises(ValueError, match="cannot tell the chat layout"):
        load_chats([{"foo": 1}])


def test_worker_processes_give_the_same_counts(tiny_tokenizer):
    rows = demo_chats(120)
    one = count_tokens(tiny_tokenizer, rows, batch_size=16, progress=False)
    two = count_tokens(tiny_tokenizer, rows, batch_size=16, num_proc=2, progress=False)
    assert np.array_equal(one.counts, two.counts) and one.num_conversations == two.num_conversations == 120


def _assistant_runs(tokenizer, messages) -> list[str]:
    ids, mask = assistant_token_mask(tokenizer, messages)
    return [tokenizer.decode(run) for run in _runs(ids, mask)]


@pytest.mark.parametrize("name", ["tiny_tokenizer", "qwen3_tokenizer", "gemma3_tokenizer", "llama3_tokenizer"])
def test_short_replies_and_replies_inside_user_text_are_located_exactly(name, request):
    """Short replies are not matched inside the template's own text (e.g. "i" in <|eot_id|>, "end" in
    <|end_header_id|>), and a reply that also occurs in a trimmed user message is not matched inside it."""
    tokenizer = request.getfixturevalue(name)
    short = [
        {"role": "user", "content": "say i"},
        {"role": "assistant", "content": "i"},
        {"role": "user", "content": "say end"},
        {"role": "assistant", "content": "end"},
    ]
    assert _assistant_runs(tokenizer, short) == ["i", "end"]
    quoted = [
        {"role": "user", "content": 'Is "a positive surprise" positive or negative?\n'},
        {"role": "assistant", "content": "positive"},
    ]
    assert _assistant_runs(tokenizer, quoted) == ["positive"]
    text, spans = render_batch_with_spans(tokenizer, [quoted])[0]
    assert len(spans) == 1 and spans[0][0] > text.index("or negative")  # the reply, not the user's word


def test_reasoning_is_counted_where_rendered_and_think_blocks_do_not_abort(qwen3_tokenizer):
    rows = [
        {
            "messages": [
                {"role": "user", "content": "q1"},
                {"role": "assistant", "content": "<think>\nhmm\n</think>\n\nanswer one"},  # earlier turn: no think
                {"role": "user", "content": "q2"},
                {"role": "assistant", "content": "answer two", "reasoning_content": "let me think"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "parts"},
                {"role": "assistant", "content": [{"type": "text", "text": "one "}, {"type": "text", "text": "two"}]},
                {"role": "user", "content": None},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}],
                },
            ]
        },
    ]
    chats = load_chats(rows)
    first, second = chats[0]["messages"], chats[1]["messages"]
    assert first[3]["reasoning_content"] == "let me think"
    assert second[1]["content"] == "one two" and second[2]["content"] == "" and "tool_calls" in second[3]["extra"]
    assert _assistant_runs(qwen3_tokenizer, first) == ["answer one", "let me think", "answer two"]
    text, _ = render_batch_with_spans(qwen3_tokenizer, [second])[0]
    assert '"name": "f"' in text and "None" not in text  # tool calls rendered, None not stringified
    counts = count_tokens(qwen3_tokenizer, chats, progress=False)
    think = qwen3_tokenizer("let me think", add_special_tokens=False)["input_ids"]
    assert all(counts.counts[i] > 0 for i in think) and counts.extra["skipped_conversations"] == 0


def test_rows_that_cannot_be_located_are_skipped_and_reported(tiny_tokenizer, capsys):
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)  # a template that renders every assistant message twice
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
        "{% if m['role'] == 'assistant' %}{{ m['content'] }}{% endif %}{% endfor %}"
    )
    rows = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}] * 3
    with pytest.raises(ValueError, match="3 skipped"):
        count_tokens(tokenizer, rows, progress=False)
    rows += demo_chats(4)
    tokenizer.chat_template = CHATML_SKIP_HELLO
    counts = count_tokens(tokenizer, rows, progress=False)
    assert counts.extra["skipped_conversations"] == 3 and counts.num_conversations == 7
    assert "skipped 3 of 7 conversations" in capsys.readouterr().err


# renders "hello" replies twice (unlocatable), every other chat once
CHATML_SKIP_HELLO = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% if m['role'] == 'assistant' and 'hello' in m['content'] %}{{ m['content'] }}{% endif %}{% endfor %}"
)


def test_streaming_text_bad_json_and_missing_paths(tiny_tokenizer, tmp_path, capsys):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    (tmp_path / "corpus.txt").write_text("def f():\n    return 1\n")
    streamed = load_chats(tmp_path / "corpus.txt", streaming=True)
    counts = count_tokens(tiny_tokenizer, streamed, progress=False)
    assert counts.mode == "text" and counts.num_tokens > 0
    (tmp_path / "bad.jsonl").write_text(json.dumps({"messages": CHATS[1]}) + "\n{bad json\n")
    for data, streaming, message in [
        ("bad.jsonl", False, "cannot read bad.jsonl"),
        ("bad.jsonl", True, "JSON parse error"),
        ("missing.jsonl", False, "does not exist"),
    ]:
        args = ["count", "--data", data, "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "c.json")]
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(tmp_path)
            assert main(args + (["--streaming"] if streaming else [])) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
        assert len(err) == 1 and message in err[0], err
