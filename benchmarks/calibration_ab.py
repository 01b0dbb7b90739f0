"""Calibrate on dataset responses or on the target's own outputs? An A/B on the real pair.

For two kinds of data (code: HumanEval; general: alpaca-eval instructions), the same calibration prompts are counted
twice: A, the dataset's responses (`vocabtrim count`); B, the target's greedy replies to the prompts (`vocabtrim
count --generate-with TARGET`). Both keep orders are then judged on what the draft must predict: the target's own
replies to held-out prompts, i.e. coverage of those replies' tokens at the same k, and tau (tokens per target step,
static and with context ids) from the acceptance model along them (exact: they are the target's greedy output).

    python benchmarks/calibration_ab.py --target DIR --draft DIR --alpaca alpaca_eval/example/outputs.json

Writes OUT/calibration_ab.json and OUT/calibration_ab.png; replies are cached in OUT/*.generations.jsonl (resumable).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_vocabtrim.data.chats import ChatColumns, load_chats
from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.data.target_outputs import count_replies, generate_replies, prompt_messages
from hf_vocabtrim.selection.acceptance import acceptance_curve
from hf_vocabtrim.selection.coverage import coverage_curve
from hf_vocabtrim.selection.keep_plan import KeepPlan

sys.path.insert(0, str(Path(__file__).parent))
from spec_decode import humaneval, humaneval_chat, load_pair  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KS = [1024, 2048, 4096, 8192, 16384, 32768, 65536]


def grid(vocab: int) -> list[int]:
    return [k for k in KS if k < vocab] or [vocab // 8, vocab // 4, vocab // 2]


def judge(order: np.ndarray, replies: list[list[int]], prompts: list[list[int]], target: Any, draft: Any, gamma: int):
    """Coverage of the held-out replies' tokens and tau along them (static, context), on the grid of k."""
    ks = grid(len(order))
    counts = np.bincount(np.concatenate(replies), minlength=len(order))
    coverage = coverage_curve(counts, order)
    sequences = [torch.tensor(p + r) for p, r in zip(prompts, replies)]
    starts = [len(p) for p in prompts]
    curve = acceptance_curve(target, draft, sequences, starts, order, ks, gamma, context=True)
    at = [curve.ks.index(k) for k in ks]
    full = curve.tau[-1]
    return {
        "coverage": [float(coverage[k]) for k in ks],
        "tau_static": [curve.tau[i] for i in at],
        "tau_context": [curve.tau_context[i] for i in at] if curve.tau_context else None,
        "tau_untrimmed": full,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--draft", required=True)
    parser.add_argument("--alpaca", required=True, help="alpaca-eval example/outputs.json")
    parser.add_argument("--general-calibration", type=int, default=96, help="alpaca-eval instructions 0.. counted")
    parser.add_argument("--general-heldout", type=int, default=32, help="alpaca-eval instructions 600.. held out")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--gamma", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "results" / "calibration_ab"))
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, target, draft = load_pair(args.target, args.draft, args.threads)
    problems = humaneval()
    code = [{"messages": humaneval_chat(p)} for p in problems[: len(problems) // 2]]
    general = list(load_chats(args.alpaca, columns=ChatColumns(prompt="instruction", response="output")))
    sets = {
        "code": (code[: len(code) // 2], code[len(code) // 2 :]),
        "general": (general[: args.general_calibration], general[600 : 600 + args.general_heldout]),
    }
    draft_vocab = int(draft.config.vocab_size)
    report: dict[str, Any] = {
        "what": "calibration on dataset responses (A) vs on the target's own greedy replies to the same prompts (B), "
        "judged on the target's replies to held-out prompts: coverage of their tokens and tau along them (exact), "
        "at the same k",
        "ks": grid(draft_vocab),
        "settings": {
            "max_new_tokens": args.max_new_tokens,
            "gamma": args.gamma,
            "target": Path(args.target).name,
            "draft": Path(args.draft).name,
        },
    }
    for name, (calibration, held) in sets.items():
        print(f"[{name}] target replies: {len(calibration)} calibration + {len(held)} held-out prompts", flush=True)
        kwargs = {"max_new_tokens": args.max_new_tokens, "batch_size": args.batch_size}
        cal_replies = generate_replies(
            target, tokenizer, calibration, generations=out / f"{name}_calibration.generations.jsonl", **kwargs
        )
        held_replies = generate_replies(
            target, tokenizer, held, generations=out / f"{name}_heldout.generations.jsonl", **kwargs
        )
        counts = {
            "A_dataset_responses": count_tokens(tokenizer, calibration, source=f"{name} responses", progress=False),
            "B_target_replies": count_replies(cal_replies, tokenizer, f"{name} target replies"),
        }
        held_prompts = [
            list(
                tokenizer.apply_chat_template(
                    prompt_messages(row["messages"]), add_generation_prompt=True, return_dict=True
                )["input_ids"]
            )
            for row in held
        ]
        report[name] = {"calibration_prompts": len(calibration), "heldout_prompts": len(held)}
        for label, table in counts.items():
            order = KeepPlan.from_counts(table, draft.config, draft.generation_config).order
            print(f"[{name}] judging {label} ...", flush=True)
            report[name][label] = {
                "calibration_tokens": table.num_tokens,
                **judge(order, held_replies, held_prompts, target, draft, args.gamma),
            }
        report[name]["heldout_reply_tokens"] = int(sum(map(len, held_replies)))
        (out / "calibration_ab.json").write_text(json.dumps(report, indent=2))
    report["wall_seconds"] = time.perf_counter() - started
    (out / "calibration_ab.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "calibration_ab.png")
    for name in sets:
        for label in ("A_dataset_responses", "B_target_replies"):
            row = report[name][label]
            print(
                f"{name:>8} {label:>20}: coverage {[round(c, 3) for c in row['coverage']]}; "
                f"tau static {[round(t, 2) for t in row['tau_static']]}; context "
                f"{[round(t, 2) for t in row['tau_context']]} (untrimmed {row['tau_untrimmed']:.2f})"
            )
    print(f"wrote {out / 'calibration_ab.json'} in {report['wall_seconds'] / 60:.1f} min")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("code", "general") if n in report]
    fig, axes = plt.subplots(1, 2 * len(names), figsize=(8 * len(names), 4.8), constrained_layout=True)
    fig.suptitle(
        "calibration on dataset responses (A) vs the target's own replies (B), judged on held-out target replies"
    )
    for i, name in enumerate(names):
        cover, tau = axes[2 * i], axes[2 * i + 1]
        for label, colour in (("A_dataset_responses", "tab:blue"), ("B_target_replies", "tab:orange")):
            row = report[name][label]
            short = "A: dataset responses" if label.startswith("A") else "B: target replies"
            cover.plot(report["ks"], row["coverage"], marker="o", color=colour, label=short)
            tau.plot(report["ks"], row["tau_static"], marker="o", color=colour, label=f"{short}, static")
            tau.plot(report["ks"], row["tau_context"], marker="s", ls="--", color=colour, label=f"{short}, context")
        tau.axhline(report[name]["A_dataset_responses"]["tau_untrimmed"], color="gray", ls=":", label="untrimmed")
        for axis, what in ((cover, "coverage of held-out target replies"), (tau, "tau along held-out target replies")):
            axis.set_xscale("log")
            axis.set_xlabel("kept vocabulary k")
            axis.set_ylabel(what)
            axis.set_title(f"{name}: {what.split(' of ')[0].split(' along ')[0]}", fontsize=10)
            axis.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
