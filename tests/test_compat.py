"""A checkpoint saved by hf-vocabtrim 0.3 (``tests/fixtures/trimmed_draft_v0.3``: tiny Qwen2 draft, context tokens
on, its 0.3 code files beside it) loads with the package installed and with ``trust_remote_code`` in a process
where the package cannot be imported, and drafts losslessly both ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.measure.instrument import record_assisted
from hf_vocabtrim.tiny import build_tiny_tokenizer, demo_chats, tiny_causal_lm

from .helpers import use_path
from .test_remote_code import run_without_the_package

FIXTURE = Path(__file__).parent / "fixtures" / "trimmed_draft_v0.3"


@pytest.fixture(scope="module")
def pair():
    tokenizer = build_tiny_tokenizer()
    target = tiny_causal_lm("qwen2", len(tokenizer), seed=0, eos_token_id=tokenizer.eos_token_id)  # as in 0.3
    prompts = []
    for chat in demo_chats(4, seed=7):
        messages = [m for m in chat["messages"] if m["role"] != "assistant"][:2]
        prompts.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt"))
    return tokenizer, target, [p["input_ids"] if not isinstance(p, torch.Tensor) else p for p in prompts]


def _drafted(target, draft, prompt) -> tuple[list, list[list[int]]]:
    kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 24}
    with record_assisted() as stats:
        out = target.generate(**kwargs, do_sample=False, assistant_model=draft)
    assert torch.equal(out, target.generate(**kwargs, do_sample=False))  # lossless
    return out.tolist(), [d.tolist() for d in stats.drafted]


@pytest.mark.parametrize("path", ["eager", "static", "captured-twin"])
def test_a_0_3_checkpoint_loads_installed_and_drafts_losslessly(path, pair):
    """Loaded, it drafts exactly what the same draft trimmed by this release drafts (same kept ids, same scores)."""
    tokenizer, target, prompts = pair
    assert "trimmed_head.py" not in {p.name for p in FIXTURE.iterdir()}  # written by 0.3 indeed
    loaded = TrimmedDraftModel.from_pretrained(FIXTURE)
    assert loaded.config.context_tokens and loaded.kept_ids.numel() == loaded.config.draft_vocab_size == 173
    base = tiny_causal_lm("qwen2", len(tokenizer), seed=1, eos_token_id=tokenizer.eos_token_id)  # the 0.3 recipe
    rebuilt = TrimmedDraftModel.from_draft(
        base, range(0, len(tokenizer), 3), tokenizer=tokenizer, target=target, context_tokens=True
    )
    assert torch.equal(loaded.kept_ids, rebuilt.kept_ids)
    for draft in (loaded, rebuilt):
        use_path(draft, path)
    for prompt in prompts:
        assert _drafted(target, loaded, prompt) == _drafted(target, rebuilt, prompt)


def test_a_0_3_checkpoint_loads_with_remote_code_without_the_package(pair, tmp_path):
    _, target, _ = pair
    target.save_pretrained(tmp_path / "target")
    out = run_without_the_package(FIXTURE, tmp_path / "target", tmp_path / "modules")
    assert out["module"].startswith("transformers_modules") and not out["hf_vocabtrim_loaded"]
    assert out["equal"] and out["context_ids"] > 0 and len(out["kept"]) == 173
