"""Counting the target's own replies (`vocabtrim count --generate-with`): batched greedy replies equal one-by-one
generation, are counted exactly, resume from their JSONL file, and can be added to the dataset's responses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hf_vocabtrim import commands
from hf_vocabtrim.data.counts import TokenCounts
from hf_vocabtrim.data.target_outputs import count_replies, generate_replies, prompt_messages
from hf_vocabtrim.tiny import demo_chats, tiny_causal_lm


def _target(tokenizer):
    return tiny_causal_lm("qwen2", len(tokenizer), seed=3, eos_token_id=tokenizer.eos_token_id)


def test_batched_replies_equal_one_by_one_generation_and_are_counted(tiny_tokenizer):
    target, rows = _target(tiny_tokenizer), demo_chats(7, seed=5)
    replies = generate_replies(target, tiny_tokenizer, rows, max_new_tokens=12, batch_size=3, progress=False)
    eos = tiny_tokenizer.eos_token_id
    for row, reply in zip(rows, replies):
        prompt = tiny_tokenizer.apply_chat_template(
            prompt_messages(row["messages"]), add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        alone = target.generate(**prompt, max_new_tokens=12, do_sample=False)[0, prompt["input_ids"].shape[1] :]
        expected = alone.tolist()
        expected = expected[: expected.index(eos) + 1] if eos in expected else expected
        assert reply == expected
    counts = count_replies(replies, tiny_tokenizer, "demo")
    assert counts.num_tokens == sum(map(len, replies)) and counts.num_conversations == 7
    assert np.array_equal(counts.counts, np.bincount(np.concatenate(replies), minlength=len(tiny_tokenizer)))
    assert prompt_messages(rows[0]["messages"])[-1]["role"] == "user"
    with pytest.raises(ValueError, match="no prompt"):
        prompt_messages([{"role": "assistant", "content": "hi"}])


def test_replies_resume_from_their_file(tiny_tokenizer, tmp_path, monkeypatch):
    target, rows = _target(tiny_tokenizer), demo_chats(6, seed=5)
    path = tmp_path / "replies.jsonl"
    first = generate_replies(target, tiny_tokenizer, rows[:4], max_new_tokens=8, batch_size=2, generations=path)
    assert len(path.read_text().splitlines()) == 4
    calls = []
    generate = type(target).generate

    def counted(self, *args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(type(target), "generate", counted)
    again = generate_replies(target, tiny_tokenizer, rows, max_new_tokens=8, batch_size=2, generations=path)
    assert again[:4] == first and sum(calls) == 2  # only the two new prompts were generated
    other = generate_replies(target, tiny_tokenizer, rows[:1], max_new_tokens=5, batch_size=2, generations=path)
    assert sum(calls) == 3 and len(other[0]) <= 5  # another max_new_tokens is another reply


def test_cli_count_generate_with(capsys, tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path / "tok")
    _target(tiny_tokenizer).save_pretrained(tmp_path / "target")
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in demo_chats(5, seed=2)))
    common = ["count", "--data", str(data), "--tokenizer", str(tmp_path / "tok"), "--generate-with"]
    common += [str(tmp_path / "target"), "--max-new-tokens", "6", "--generation-batch-size", "2"]
    assert commands.main([*common, "--out", str(tmp_path / "target.json")]) == 0
    assert (tmp_path / "target.generations.jsonl").exists()
    replies = TokenCounts.load(tmp_path / "target.json")
    assert replies.extra["responses"] == "target" and replies.extra["target"] == "target" and replies.num_tokens <= 30
    assert commands.main([*common, "--keep-dataset-responses", "--out", str(tmp_path / "both.json")]) == 0
    assert (
        commands.main(
            ["count", "--data", str(data), "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "d.json")]
        )
        == 0
    )
    both, dataset = TokenCounts.load(tmp_path / "both.json"), TokenCounts.load(tmp_path / "d.json")
    assert (
        np.array_equal(both.counts, replies.counts + dataset.counts) and both.extra["responses"] == "dataset and target"
    )
    assert str(tmp_path) not in (tmp_path / "both.json").read_text()
