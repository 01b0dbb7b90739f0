"""Tiny models that vLLM's CPU build serves (head_dim 32), built offline in under a minute: a Llama target fitted on
the demo chats, a 2-layer draft fitted on the same chats, and a one-layer EAGLE-3 head trained on the target's
hidden states (``benchmarks/eagle3_head.py``, the benchmark's recipe on a tiny scale), plus the target's greedy
replies to held-out prompts (what "every id the replies use" means in the tests)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

from hf_vocabtrim.data.specials import end_of_reply_ids
from hf_vocabtrim.data.target_outputs import generate_replies, prompt_ids
from hf_vocabtrim.demo import train_tiny_target
from hf_vocabtrim.tiny import build_tiny_tokenizer, demo_chats

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import eagle3_head  # noqa: E402

SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2}
SHAPE |= {"max_position_embeddings": 512}
HEAD_ROWS = 256
PROMPTS, NEW_TOKENS = 8, 32


def build(folder: Path) -> dict[str, Any]:
    """Write ``target/``, ``draft/``, ``draft_gemma2/``, ``head/`` under ``folder``; return their paths, the test
    prompts' ids and the target's greedy replies to them."""
    torch.manual_seed(0)
    tokenizer = build_tiny_tokenizer()
    chats = demo_chats(240)
    train, held = chats[:180], chats[200 : 200 + PROMPTS]
    target = train_tiny_target(tokenizer, train, steps=250, num_hidden_layers=4, **SHAPE)
    draft = train_tiny_target(tokenizer, train, steps=120, seed=1, num_hidden_layers=2, **SHAPE)
    # a Gemma 2 draft: vLLM's Gemma2ForCausalLM scores with its input embedding, not an LM head (global layers
    # only: vLLM's draft_model path refuses a draft whose layers need two KV-cache groups, sliding and global)
    gemma = {"model_type": "gemma2", "head_dim": 32, "query_pre_attn_scalar": 32, "num_hidden_layers": 2}
    gemma["layer_types"] = ["full_attention"] * 2
    draft_gemma2 = train_tiny_target(tokenizer, train, steps=120, seed=2, **SHAPE, **gemma)
    paths = {name: folder / name for name in ("target", "draft", "draft_gemma2", "head")}
    for name, model in (("target", target), ("draft", draft), ("draft_gemma2", draft_gemma2)):
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    # the EAGLE-3 head, SpecForge's way: draft vocabulary = the ids most used in the target's replies to the
    # training prompts (end of turn included), trained on the target's hidden states along those replies
    replies = generate_replies(target, tokenizer, train[:96], max_new_tokens=48, batch_size=16, progress=False)
    prompts = [prompt_ids(tokenizer, row["messages"]) for row in train[:96]]
    ends = end_of_reply_ids(tokenizer)
    kept = eagle3_head.draft_vocabulary(replies, HEAD_ROWS, len(tokenizer), ends)
    aux = eagle3_head.default_aux_layers(target.config.num_hidden_layers)
    config = eagle3_head.head_config(target.config, len(kept), aux)
    rows = eagle3_head.collect(target, [p + r for p, r in zip(prompts, replies)], [len(p) for p in prompts], aux)
    head, info = eagle3_head.train_head(target, rows, config, kept, epochs=8, lr=3e-3, tokens_per_step=1024)
    eagle3_head.save(head, kept, paths["head"], info)
    held_prompts = [prompt_ids(tokenizer, row["messages"]) for row in held]
    held_replies = generate_replies(target, tokenizer, held, max_new_tokens=NEW_TOKENS, batch_size=8, progress=False)
    (folder / "held.json").write_text(json.dumps({"prompts": held_prompts, "replies": held_replies}))
    built = {k: str(v) for k, v in paths.items()}
    return {**built, "prompts": held_prompts, "replies": held_replies, "head_info": info}


if __name__ == "__main__":
    import time

    start = time.time()
    built = build(Path(sys.argv[1]))
    print(json.dumps({"seconds": round(time.time() - start, 1), "head": built["head_info"]}))
