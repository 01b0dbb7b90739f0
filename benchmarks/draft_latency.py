"""Per-token decode latency of a draft vs k, measured side by side in one run (random weights, KV cache, batch 1).

For each draft shape the full-vocabulary draft and trimmed drafts (sharing its body) are timed in interleaved
rounds; each round decodes ``--steps`` tokens after a ``--prompt``-token prefill (cache cropped back between rounds)
and includes what generate() does per token after the forward: the k -> V scatter for trimmed drafts and argmax.
The body alone (no LM head) is timed too, giving the head's share and the floor for each k:
floor(k) = body + k/V * (full - body). Also prints the FLOPs model's predicted latency reduction R(k) beside the
measured one, and the step of a draft trimmed to k = --context-k with context tokens on after a 64-, 256- and
2,048-token prompt (one context slot per position: the ids of the sequence so far, kept ids masked), against the
same draft's static step (context tokens off) after the same prompt, in the same interleaved rounds.

    python benchmarks/draft_latency.py --out results/draft_latency
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.measure.profiling import decode_step, fit_linear, time_decode
from hf_vocabtrim.selection.flops import decode_flops, latency_reduction
from hf_vocabtrim.selection.plotting import plot_latency

SHAPES = {
    "qwen2.5-0.5b": dict(
        model_type="qwen2",
        hidden_size=896,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        intermediate_size=4864,
        vocab_size=151936,
        tie_word_embeddings=True,
        max_position_embeddings=8400,
    ),
    "gemma-3-270m": dict(
        model_type="gemma3_text",
        hidden_size=640,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        intermediate_size=2048,
        vocab_size=262144,
        sliding_window=512,
        query_pre_attn_scalar=256,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
    ),
    "tiny": dict(
        model_type="llama",
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        vocab_size=8192,
        max_position_embeddings=512,
    ),
}
KS = [65536, 32768, 16384, 8192, 4096, 2048, 1024]
CONTEXT_IDS = [64, 256, 2048]  # sequence lengths: one context slot per position


def time_shape(
    name: str, spec: dict, ks: list[int], prompt: int, steps: int, rounds: int, context_k: int,
    context_lengths: list[int] = CONTEXT_IDS,
) -> dict:  # fmt: skip
    spec = dict(spec)
    config = AutoConfig.for_model(spec.pop("model_type"), **spec)
    torch.manual_seed(0)
    full = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()
    vocab = config.vocab_size
    ks = [k for k in ks if k < vocab]
    steps_by_key = {"full": decode_step(full), "body": decode_step(full, body_only=True)}
    for k in ks:
        keep = torch.randperm(vocab)[:k]
        trimmed = TrimmedDraftModel.from_draft(full, keep, keep_special_tokens=False, context_tokens=False).eval()
        steps_by_key[k] = decode_step(trimmed)
        if k == context_k:
            with_context = TrimmedDraftModel.from_draft(full, keep, keep_special_tokens=False, context_tokens=True)
            context_steps = {"static": steps_by_key[k], "context": decode_step(with_context.eval())}
    med = {key: value["ms"] for key, value in time_decode(steps_by_key, config, prompt, steps, rounds).items()}
    context = []
    lengths = [n for n in context_lengths if n + 2 * steps <= config.max_position_embeddings] if context_k in ks else []
    for n in lengths:  # the same draft, static and with context slots, after n tokens
        timed = {key: value["ms"] for key, value in time_decode(context_steps, config, n, steps, rounds).items()}
        context.append(
            {"k": context_k, "sequence_tokens": n, "static_ms": timed["static"], "ms": timed["context"],
             "vs_static": timed["context"] / timed["static"]}
        )  # fmt: skip
    flops = decode_flops(config, context_length=prompt)
    head_ms = med["full"] - med["body"]
    rows = []
    for k in [vocab, *ks]:
        ms = med["full"] if k == vocab else med[k]
        floor = med["body"] + k / vocab * head_ms
        rows.append(
            {
                "k": k,
                "ms": ms,
                "speedup_vs_full": med["full"] / ms,
                "floor_ms": floor,
                "above_floor": ms / floor - 1.0,
                "measured_R": 1.0 - ms / med["full"],
                "flops_R": float(latency_reduction(flops, k, vocab)),
            }
        )
    return {
        "name": name,
        "vocab_size": vocab,
        "full_ms": med["full"],
        "body_ms": med["body"],
        "head_ms": head_ms,
        "head_share_measured": head_ms / med["full"],
        "head_share_flops": flops.lm_head / flops.total,
        "fit": fit_linear([vocab, *ks], [med["full"], *(med[k] for k in ks)]),
        "rows": rows,
        "context": context,
        "rounds": rounds,
        "steps_per_round": steps,
        "prompt_tokens": prompt,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["qwen2.5-0.5b", "gemma-3-270m"], choices=sorted(SHAPES))
    parser.add_argument("--ks", nargs="+", type=int, default=KS)
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens in the cache")
    parser.add_argument("--steps", type=int, default=8, help="decode steps per timed round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median taken)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--context-k", type=int, default=8192, help="k of the context-token drafts")
    parser.add_argument("--context-lengths", type=int, nargs="+", default=CONTEXT_IDS, help="sequence lengths")
    parser.add_argument("--out", default="results/draft_latency")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for name in args.shapes:
        print(f"== {name}: building and timing ({args.rounds} rounds x {args.steps} steps) ...", flush=True)
        res = time_shape(
            name, SHAPES[name], args.ks, args.prompt, args.steps, args.rounds, args.context_k, args.context_lengths
        )
        results.append(res)
        print(
            f"full {res['full_ms']:.1f} ms/token, body {res['body_ms']:.1f} ms, head share measured "
            f"{res['head_share_measured']:.0%} / FLOPs {res['head_share_flops']:.0%}"
        )
        print(f"{'k':>8} {'ms':>8} {'x full':>7} {'floor ms':>9} {'vs floor':>9} {'R meas':>7} {'R flops':>8}")
        for r in res["rows"]:
            print(
                f"{r['k']:>8} {r['ms']:>8.2f} {r['speedup_vs_full']:>7.2f} {r['floor_ms']:>9.2f} "
                f"{r['above_floor']:>+9.1%} {r['measured_R']:>7.3f} {r['flops_R']:>8.3f}"
            )
        for r in res["context"]:
            print(
                f"k={r['k']} with context tokens after {r['sequence_tokens']:>5} tokens: {r['ms']:.2f} ms "
                f"({r['vs_static'] - 1:+.1%} vs the static step, {r['static_ms']:.2f} ms)"
            )
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": "float32", "device": "cpu"}
    (out / "draft_latency.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    plot_latency(results, out / "draft_latency.png")
    print(f"wrote {out}/draft_latency.json and draft_latency.png")


if __name__ == "__main__":
    main()
