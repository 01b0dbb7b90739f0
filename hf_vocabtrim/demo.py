# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim demo``: count -> optimize -> trim -> save -> load -> assisted generate, offline, in seconds.

The target is a tiny Llama trained for a few seconds on embedded synthetic chats (so that its outputs are
in-domain); the draft is that same model, whose LM head is then trimmed. Every assisted output is checked equal to
the target's own greedy output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from .data.chats import load_chats
from .data.counting import count_tokens
from .loaders import load_draft_config
from .model.trimming import trim_draft
from .selection.planning import Utility, plan
from .selection.report import write_report
from .tiny import build_tiny_tokenizer, demo_chats, tiny_causal_lm

# head_dim 32: vLLM's CPU attention refuses head_dim 16, so the demo's folders are ones vLLM can serve
VLLM_SHAPE: dict[str, Any] = {"num_attention_heads": 2, "num_key_value_heads": 2}


def train_tiny_target(
    tokenizer: Any,
    chats: list[dict[str, Any]],
    steps: int = 150,
    seed: int = 0,
    model_type: str = "llama",
    **config: Any,
) -> Any:
    """A tiny model (a Llama by default) fitted on ``chats`` for a few seconds on the CPU (so the demo's outputs are
    in-domain); ``config`` overrides its shape (e.g. ``num_attention_heads`` for vLLM's CPU attention, head_dim >=
    32)."""
    shape = {"hidden_size": 64, "intermediate_size": 128, "tie_word_embeddings": True, **config}
    model = tiny_causal_lm(model_type, len(tokenizer), seed=seed, eos_token_id=tokenizer.eos_token_id, **shape)
    texts = [tokenizer.apply_chat_template(c["messages"], tokenize=False) for c in chats]
    ids = tokenizer(
        texts, add_special_tokens=False, padding="max_length", truncation=True, max_length=96, return_tensors="pt"
    )
    labels = ids["input_ids"].masked_fill(ids["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in tqdm(range(steps), desc="training the tiny target", unit="step"):
        batch = torch.randint(0, len(texts), (16,), generator=generator)
        loss = model(
            input_ids=ids["input_ids"][batch], attention_mask=ids["attention_mask"][batch], labels=labels[batch]
        ).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def run_demo(out_dir: str | Path = "vocabtrim_demo", n_prompts: int = 8, max_new_tokens: int = 40) -> dict[str, Any]:
    """Run the whole pipeline on tiny local assets; write ``demo_summary.json``; raise if any output differs."""
    from transformers import AutoModelForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer()
    chats = demo_chats(240)
    calibration, heldout = chats[:180], chats[180:]
    data_file = out / "chats.jsonl"
    data_file.write_text("".join(json.dumps(c) + "\n" for c in calibration))

    counts = count_tokens(tokenizer, load_chats(data_file), source=data_file.name)
    counts.save(out / "counts.json")
    held_counts = count_tokens(tokenizer, load_chats(heldout), source="held-out demo chats")

    target = train_tiny_target(tokenizer, calibration, **VLLM_SHAPE)
    target.save_pretrained(out / "target")
    tokenizer.save_pretrained(out / "target")
    draft_config = load_draft_config(out / "target")
    planned = plan(
        counts,
        draft_config,
        objective=Utility(alpha=0.5),
        generation_config=target.generation_config,
        coverage_basis="heldout",
        heldout=held_counts,
        min_coverage=0.95,
        k_min=8,
        n_trials=30,
    )
    summary = write_report(planned, out / "optimize", draft_config, alpha=0.5)
    draft = AutoModelForCausalLM.from_pretrained(out / "target").eval()  # a self-draft: same weights as the target
    trimmed = trim_draft(draft, planned.keep_plan, tokenizer=tokenizer, target=target, counts=counts)
    trimmed.save_pretrained(out / "trimmed_draft")
    tokenizer.save_pretrained(out / "trimmed_draft")
    loaded = AutoModelForCausalLM.from_pretrained(out / "trimmed_draft").eval()

    equal = 0
    times = {"target": 0.0, "assisted": 0.0}
    for chat in tqdm(heldout[:n_prompts], desc="assisted generation", unit="prompt"):
        prompt = tokenizer.apply_chat_template(
            chat["messages"][:-1] if chat["messages"][-1]["role"] == "assistant" else chat["messages"],
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
        )
        kwargs = {**prompt, "max_new_tokens": max_new_tokens, "do_sample": False}
        t0 = time.perf_counter()
        reference = target.generate(**kwargs)
        t1 = time.perf_counter()
        assisted = target.generate(**kwargs, assistant_model=loaded)
        times["target"] += t1 - t0
        times["assisted"] += time.perf_counter() - t1
        if not torch.equal(reference, assisted):
            raise AssertionError(f"assisted output differs from the target's for prompt {chat['messages'][0]}")
        equal += 1
    result = {
        "k": summary["k"],
        "vocab_size": summary["vocab_size"],
        "calibration_coverage": summary["calibration_coverage"],
        "heldout_coverage": summary["heldout_coverage"],
        "context_tokens": trimmed.config.context_tokens,
        "latency_reduction": summary["latency_reduction"],
        "exact_k": summary["exact_k"],
        "tpe_gap": summary["tpe_gap"],
        "assisted_equals_target": f"{equal}/{n_prompts}",
        "seconds": times,
    }
    (out / "demo_summary.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(
        f"demo: the draft trimmed to k={summary['k']:,} of V={summary['vocab_size']:,} ids gave the target's own "
        f"output on {equal}/{n_prompts} prompts (lossless); report: {out / 'optimize' / 'trim_report.png'}"
    )
    return result
