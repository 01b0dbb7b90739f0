# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim`` command line: count -> optimize -> trim (and profile, export, import, demo)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DTYPES = ("float32", "bfloat16", "float16", "auto")


def load_tokenizer(source: str, gguf_file: str | None = None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))


def load_causal_lm(source: str, gguf_file: str | None = None, dtype: str = "float32") -> Any:
    """``AutoModelForCausalLM`` from a folder or Hub id (``gguf_file`` for GGUF checkpoints), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype if dtype == "auto" else getattr(torch, dtype)}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    return AutoModelForCausalLM.from_pretrained(source, **kwargs).eval()


def _add_data_args(parser: argparse.ArgumentParser, flag: str = "--data", required: bool = True) -> None:
    parser.add_argument(
        flag, required=required, help="chat data: .json/.jsonl/.parquet/.csv/.txt file, folder or Hub dataset id"
    )
    parser.add_argument("--split", default="train", help="dataset split (Hub / folder datasets)")
    parser.add_argument("--data-config", default=None, help="dataset configuration name (Hub datasets)")
    parser.add_argument("--streaming", action="store_true", help="stream the dataset instead of downloading it")
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", "messages", "sharegpt", "pairs", "text"],
        help="layout of the rows (auto: from the column names)",
    )
    parser.add_argument("--messages-column", default="messages")
    parser.add_argument("--conversations-column", default="conversations")
    parser.add_argument("--prompt-column", default="prompt")
    parser.add_argument("--response-column", default="response")
    parser.add_argument("--system-column", default=None)
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--max-examples", type=int, default=None, help="use only the first N rows")


def _count(args: argparse.Namespace, data: str, tokenizer: Any) -> Any:
    from .counting import count_tokens
    from .data import ChatColumns, load_chats

    columns = ChatColumns(
        messages=args.messages_column,
        conversations=args.conversations_column,
        prompt=args.prompt_column,
        response=args.response_column,
        system=args.system_column,
        text=args.text_column,
    )
    dataset = load_chats(
        data,
        split=args.split,
        streaming=args.streaming,
        fmt=args.format,
        columns=columns,
        max_examples=args.max_examples,
        data_config=args.data_config,
    )
    return count_tokens(tokenizer, dataset, batch_size=args.batch_size, num_proc=args.num_proc, source=str(data))


def cmd_count(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer, args.gguf_file)
    counts = _count(args, args.data, tokenizer)
    counts.save(args.out)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "conversations": counts.num_conversations,
                "tokens": counts.num_tokens,
                "distinct_ids": int((counts.counts > 0).sum()),
                "vocab_size": counts.vocab_size,
            }
        )
    )
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from .counting import TokenCounts
    from .planning import load_draft_config, plan

    counts = TokenCounts.load(args.counts)
    heldout = TokenCounts.load(args.eval_counts) if args.eval_counts else None
    if args.eval_data:
        if not args.tokenizer:
            raise ValueError("--eval-data needs --tokenizer (the tokenizer the counts were made with).")
        tokenizer = load_tokenizer(args.tokenizer)
        counts.check_tokenizer(tokenizer)
        heldout = _count(args, args.eval_data, tokenizer)
    draft_config = load_draft_config(args.draft_config)
    latency_fit = json.loads(Path(args.latency_fit).read_text()) if args.latency_fit else None
    acceptance = timing = None
    if args.objective == "speedup":
        if not args.acceptance:
            raise ValueError("--objective speedup needs --acceptance (from `vocabtrim acceptance`).")
        acceptance = json.loads(Path(args.acceptance).read_text())
        timing = dict(acceptance.get("timing") or {})
        for key in ("target_ms", "verify_ms", "draft_ms"):
            if getattr(args, key) is not None:
                timing[key] = getattr(args, key)
        if "target_ms" not in timing:
            raise ValueError(
                "--objective speedup needs the target step time: --target-ms (or timings in --acceptance)."
            )
    summary = plan(
        counts,
        draft_config,
        args.out,
        alpha=args.alpha,
        min_coverage=args.min_coverage,
        k_min=args.k_min,
        k_max=args.k_max,
        n_trials=args.trials,
        seed=args.seed,
        context_length=args.context_length,
        heldout=heldout,
        latency_fit=latency_fit,
        objective_coverage=args.objective_coverage,
        objective=args.objective,
        acceptance=acceptance,
        timing=timing,
    )
    keys = (
        "k",
        "coverage",
        "heldout_coverage",
        "latency_reduction",
        "utility",
        "exact_k",
        "exact_utility",
        "tpe_gap",
        "predicted_speedup",
        "objectives",
    )
    print(json.dumps({key: summary[key] for key in keys if key in summary}, indent=1))
    print(f"wrote {args.out}/summary.json, trials.json, pareto.json, trim_report.png")
    return 0


def cmd_trim(args: argparse.Namespace) -> int:
    from .counting import TokenCounts
    from .planning import trim_from_counts

    if (args.k is None) == (args.summary is None):
        raise ValueError("pass exactly one of --k or --summary.")
    k = args.k if args.k is not None else int(json.loads(Path(args.summary).read_text())["k"])
    counts = TokenCounts.load(args.counts)
    tokenizer = load_tokenizer(args.tokenizer or args.draft, args.gguf_file)
    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype)
    settings = {"num_assistant_tokens": args.num_assistant_tokens}
    model = trim_from_counts(
        draft,
        counts,
        k,
        tokenizer=tokenizer,
        assistant_settings=settings,
        trimming={"base_model": args.draft, "gguf_file": args.gguf_file},
    )
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(
        json.dumps(
            {
                "out": str(args.out),
                "k": k,
                "vocab_size": model.full_vocab_size,
                "coverage": model.config.trimming["coverage"],
            }
        )
    )
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from .profiling import profile_draft

    if args.threads:
        torch.set_num_threads(args.threads)
    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype)
    if args.device:
        draft.to(args.device)
    result = profile_draft(draft, args.ks, prompt=args.prompt, steps=args.steps, rounds=args.rounds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for point in result["points"]:
        print(f"k={point['k']:>8}: {point['ms']:8.2f} ms/token")
    print(
        f"fit: time(k) = {result['a_ms']:.3f} ms + {result['b_ms_per_row'] * 1000:.4f} ms per 1000 rows "
        f"(max error {result['max_rel_error']:.1%}); wrote {args.out}"
    )
    return 0


def cmd_acceptance(args: argparse.Namespace) -> int:
    from .acceptance import measure_acceptance
    from .counting import TokenCounts

    counts = TokenCounts.load(args.counts)
    tokenizer = load_tokenizer(args.tokenizer or args.draft)
    counts.check_tokenizer(tokenizer)
    target = load_causal_lm(args.target, None, args.dtype)
    draft = load_causal_lm(args.draft, None, args.dtype)
    from .data import ChatColumns, load_chats

    rows = load_chats(args.data, split=args.split, max_examples=args.max_examples, columns=ChatColumns())
    result = measure_acceptance(
        target, draft, tokenizer, rows, counts, ks=args.ks, gamma=args.gamma, max_length=args.max_length
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for k, tau in zip(result["ks"], result["tau"]):
        print(f"k={k:>8}: tau {tau:.3f}")
    print(f"timing: {json.dumps(result['timing'])}; wrote {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np
    from safetensors import safe_open

    from .export import export_token_map

    config = json.loads((Path(args.model) / "config.json").read_text())
    if config.get("model_type") != "trimmed_draft":
        raise ValueError(f"{args.model} is not a trimmed draft; create one with `vocabtrim trim`.")
    with safe_open(str(Path(args.model) / "model.safetensors"), framework="np") as handle:
        kept = np.asarray(handle.get_tensor("kept_ids"))
    if args.format == "frspec" and args.counts:  # FR-Spec wants the ids most frequent first
        from .counting import TokenCounts

        counts = TokenCounts.load(args.counts).counts
        padded = np.concatenate([counts, np.zeros(max(0, int(kept.max()) + 1 - len(counts)), dtype=np.int64)])
        kept = kept[np.argsort(-padded[kept], kind="stable")]
    vocab = int(config["text_config"]["vocab_size"])
    path = export_token_map(kept, args.out, args.format, vocab_size=vocab)
    print(json.dumps({"out": str(path), "format": args.format, "k": int(len(kept)), "vocab_size": vocab}))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .export import import_token_map
    from .modeling_trimmed_draft import TrimmedDraftModel

    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype)
    vocab = int(draft.config.get_text_config().vocab_size)
    kept = import_token_map(args.token_map, args.format, vocab_size=vocab)
    model = TrimmedDraftModel.from_draft(
        draft,
        kept,
        keep_special_tokens=not args.exact,
        trimming={"imported_from": str(args.token_map), "format": args.format},
    )
    model.save_pretrained(args.out)
    try:
        load_tokenizer(args.draft, args.gguf_file).save_pretrained(args.out)
    except Exception as err:  # no (loadable) tokenizer there: the model folder is complete without it; say so
        print(f"vocabtrim import: note: no tokenizer saved with the model ({err})", file=sys.stderr)
    print(json.dumps({"out": str(args.out), "k": model.config.draft_vocab_size, "vocab_size": vocab}))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vocabtrim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("count", help="count assistant tokens of chat data with a tokenizer's chat template")
    _add_data_args(p)
    p.add_argument("--tokenizer", required=True, help="tokenizer folder or Hub id")
    p.add_argument("--gguf-file", default=None, help="read the tokenizer from this GGUF file in --tokenizer")
    p.add_argument("--out", required=True, help="counts file (.json or .safetensors)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-proc", type=int, default=1, help="worker processes")
    p.set_defaults(func=cmd_count)

    p = sub.add_parser("optimize", help="choose k: max U(k) s.t. C(k) >= c_min with Optuna TPE; JSON + PNG")
    p.add_argument("--counts", required=True, help="counts file from `vocabtrim count`")
    p.add_argument("--draft-config", required=True, help="draft folder, Hub id or config.json")
    p.add_argument("--min-coverage", type=float, default=0.9, help="coverage floor c_min")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of coverage in U(k)")
    p.add_argument("--trials", type=int, default=50, help="TPE trials")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--k-min", type=int, default=None)
    p.add_argument("--k-max", type=int, default=None)
    p.add_argument("--context-length", type=int, default=1024, help="context length for attention FLOPs")
    p.add_argument("--latency-fit", default=None, help="latency fit JSON from `vocabtrim profile` instead of FLOPs")
    p.add_argument(
        "--objective",
        default="utility",
        choices=["utility", "speedup"],
        help="utility: the paper's U(k); speedup: predicted tokens/s from acceptance and step times",
    )
    p.add_argument(
        "--objective-coverage",
        default="calibration",
        choices=["calibration", "heldout"],
        help="coverage used in U(k) and the floor (heldout needs --eval-counts/--eval-data)",
    )
    p.add_argument("--acceptance", default=None, help="acceptance JSON from `vocabtrim acceptance`")
    p.add_argument("--target-ms", type=float, default=None, help="target 1-token step time (speedup objective)")
    p.add_argument("--verify-ms", type=float, default=None, help="target verification time (default: target-ms)")
    p.add_argument("--draft-ms", type=float, default=None, help="full-vocabulary draft step time (no --latency-fit)")
    p.add_argument("--eval-counts", default=None, help="held-out counts file for out-of-domain coverage")
    _add_data_args(p, "--eval-data", required=False)
    p.add_argument("--tokenizer", default=None, help="tokenizer for --eval-data")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--num-proc", type=int, default=1)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("trim", help="write a TrimmedDraftModel folder from a draft + counts + k")
    p.add_argument("--draft", required=True, help="draft folder or Hub id")
    p.add_argument("--gguf-file", default=None, help="GGUF file inside --draft")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the draft's)")
    p.add_argument("--counts", required=True)
    p.add_argument("--k", type=int, default=None, help="kept vocabulary size")
    p.add_argument("--summary", default=None, help="summary.json from `vocabtrim optimize` (uses its k)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--num-assistant-tokens", type=int, default=5, help="draft tokens per round")
    p.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(func=cmd_trim)

    p = sub.add_parser("profile", help="time the draft's decode step at several k and fit time(k) = a + b*k")
    p.add_argument("--draft", required=True)
    p.add_argument("--gguf-file", default=None)
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--device", default=None, help="e.g. cuda")
    p.add_argument("--ks", nargs="+", type=int, default=[1024, 4096, 16384, 65536])
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", required=True, help="latency fit JSON")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("acceptance", help="exact greedy tau(k) from one teacher-forced pass of target and draft")
    p.add_argument("--target", required=True)
    p.add_argument("--draft", required=True)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--data", required=True, help="calibration chats")
    p.add_argument("--split", default="train")
    p.add_argument("--counts", required=True, help="counts that rank the ids (as for `optimize`)")
    p.add_argument("--ks", nargs="+", type=int, default=None, help="k grid (default: log-spaced)")
    p.add_argument("--gamma", type=int, default=5, help="draft tokens per round")
    p.add_argument("--max-examples", type=int, default=64)
    p.add_argument("--max-length", type=int, default=1024)
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_acceptance)

    p = sub.add_parser("export", help="write a trimmed draft's kept set for SGLang, EAGLE-3 (vLLM) or FR-Spec")
    p.add_argument("--model", required=True, help="trimmed draft folder")
    p.add_argument("--format", required=True, choices=["sglang", "eagle3", "frspec"])
    p.add_argument("--counts", default=None, help="counts to order FR-Spec's list by frequency")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="build a trimmed draft from an engine's token map")
    p.add_argument("--draft", required=True)
    p.add_argument("--gguf-file", default=None)
    p.add_argument("--token-map", required=True)
    p.add_argument("--format", required=True, choices=["sglang", "eagle3", "frspec"])
    p.add_argument("--exact", action="store_true", help="keep exactly the map's ids (no added special tokens)")
    p.add_argument("--dtype", default="float32", choices=DTYPES)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("demo", help="offline end-to-end demo on tiny embedded models and data")
    p.add_argument("--out", default="vocabtrim_demo", help="output folder")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"vocabtrim {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
