"""The guard set on the real pair: the code kept set's tokens/s pick without and with a general guard, paired on
HumanEval (in-domain) and Spec-Bench (general chat) against the untrimmed draft.

- kept set: counts of HumanEval canonical solutions 0-40 (as in spec_decode.py); the speedup objective with context
  tokens, the cost model of results/spec_decode/costs.json (profile_assisted on this machine) and the acceptance
  curve on 24 held-out HumanEval chats (41-81), coverage floor 0.8;
- guard: alpaca-eval outputs 600-663 (not counted, not benchmarked): tau along them with the code keep order and
  context ids, within --max-guard-loss (3%) of the untrimmed draft's;
- paired runs: HumanEval 82+ and Spec-Bench questions (round-robin over categories), the untrimmed draft and both
  picks (and, with --with-target, the target alone) back to back in an order rotated per prompt; every output must
  equal the target's (the first run's output when the target alone is not timed: each is checked against the others);
  tokens/s ratios to the untrimmed draft, median over prompts with a 95% bootstrap interval.

Writes OUT/guard.json (``{set: {draft: {k, vs_untrimmed_median, vs_untrimmed_ci95}}}`` and the details) and the two
optimize reports.

    python benchmarks/guard.py --target DIR --draft DIR --alpaca alpaca_eval/example/outputs.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from hf_vocabtrim.data.chats import ChatColumns, load_chats
from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.model.trimming import trim_draft
from hf_vocabtrim.selection.acceptance import AcceptanceCurve, measure_acceptance
from hf_vocabtrim.selection.guard import Guard
from hf_vocabtrim.selection.keep_plan import KeepPlan
from hf_vocabtrim.selection.planning import Speedup, plan
from hf_vocabtrim.selection.report import write_report
from hf_vocabtrim.selection.speedup import CostModel

sys.path.insert(0, str(Path(__file__).parent))
from spec_decode import (  # noqa: E402
    humaneval,
    humaneval_chat,
    load_pair,
    paired_prompt,
    paired_ratios,
    spec_bench,
)

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="target folder (Qwen2.5-Coder-1.5B-Instruct)")
    parser.add_argument("--draft", required=True, help="draft folder (Qwen2.5-Coder-0.5B-Instruct)")
    parser.add_argument("--alpaca", required=True, help="alpaca-eval example/outputs.json")
    parser.add_argument("--costs", default=str(ROOT / "results" / "spec_decode" / "costs.json"))
    parser.add_argument("--prompts", type=int, default=10, help="prompts per prompt set")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--gamma", type=int, default=5)
    parser.add_argument("--guard-chats", type=int, default=64, help="alpaca-eval outputs 600.. used as the guard")
    parser.add_argument("--max-guard-loss", type=float, default=0.03)
    parser.add_argument("--min-coverage", type=float, default=0.8)
    parser.add_argument("--with-target", action="store_true", help="also time the target alone (slowest on a CPU)")
    parser.add_argument("--reuse-acceptance", action="store_true", help="reuse OUT's acceptance curves of this plan")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "results" / "guard"))
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer, target, draft = load_pair(args.target, args.draft, args.threads)
    settings = {"num_assistant_tokens": args.gamma, "num_assistant_tokens_schedule": "constant"}
    settings["assistant_confidence_threshold"] = 0.0
    draft.generation_config.update(**settings)

    problems = humaneval()
    code = [{"messages": humaneval_chat(p)} for p in problems[: len(problems) // 2]]
    counted, held = code[: len(code) // 2], code[len(code) // 2 :]
    counts = count_tokens(tokenizer, counted, source="HumanEval canonical solutions 0-40", progress=False)
    heldout = count_tokens(tokenizer, held, source="HumanEval canonical solutions 41-81", progress=False)
    keep = KeepPlan.from_counts(counts, draft.config, draft.generation_config)
    costs = CostModel.from_dict(json.loads(Path(args.costs).read_text()))
    general = list(load_chats(args.alpaca, columns=ChatColumns(prompt="instruction", response="output")))
    guard_rows = general[600 : 600 + args.guard_chats]

    def acceptance(name: str, rows: list[Any]) -> dict[str, Any]:
        """The acceptance curve on ``rows`` (with --reuse-acceptance, OUT's if made with this keep order)."""
        path = out / f"acceptance_{name}.json"
        if args.reuse_acceptance and path.exists():
            curve = json.loads(path.read_text())
            if curve.get("plan_fingerprint") == keep.fingerprint:
                return curve
        print(f"acceptance on {len(rows)} {name} chats ...", flush=True)
        curve = measure_acceptance(target, draft, tokenizer, rows, keep, gamma=args.gamma, max_length=512)
        path.write_text(json.dumps(curve, indent=1))
        return curve

    accept, guard_accept = acceptance("code", held[:24]), acceptance("guard", guard_rows)
    objective = Speedup(AcceptanceCurve.from_dict(accept), costs, context_tokens=True)
    guard = Guard(
        f"alpaca-eval outputs 600-{599 + len(guard_rows)}",
        args.max_guard_loss,
        acceptance=AcceptanceCurve.from_dict(guard_accept),
        context_tokens=True,
    )
    common = {"heldout": heldout, "coverage_basis": "heldout", "min_coverage": args.min_coverage}
    common["generation_config"] = draft.generation_config
    picks = {}
    for name, chosen_guard in (("unguarded", None), ("guarded", guard)):
        result = plan(counts, draft.config, objective=objective, guard=chosen_guard, **common)
        summary = write_report(result, out / f"optimize_{name}", draft.config)
        picks[name] = {"k": result.choice.k, "summary": {key: summary.get(key) for key in ("advice", "guard")}}
        print(f"[{name}] k={result.choice.k:,}: {summary['advice']}", flush=True)

    def trimmed(k: int) -> Any:
        return trim_draft(draft, keep, k, context_tokens=True, assistant_settings=settings).eval()

    drafts = {"target": None} if args.with_target else {}
    drafts["untrimmed"] = draft
    drafts.update({name: trimmed(pick["k"]) for name, pick in picks.items()})
    start = len(problems) // 2
    prompt_sets = {
        "humaneval": [humaneval_chat(p)[:1] for p in problems[start : start + args.prompts]],
        "spec_bench": spec_bench(args.prompts),
    }
    warm = tokenizer("def f(x):", return_tensors="pt")
    for model in drafts.values():
        target.generate(**warm, max_new_tokens=4, do_sample=False, **({"assistant_model": model} if model else {}))
    rows: dict[str, dict[str, list[dict[str, Any]]]] = {name: {label: [] for label in drafts} for name in prompt_sets}
    for set_name, prompts in prompt_sets.items():
        for index, messages in enumerate(prompts):
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
            )
            runs, reference = paired_prompt(target, inputs, drafts, args.max_new_tokens, args.repeats, index)
            new_tokens = reference.shape[-1] - inputs["input_ids"].shape[-1]
            for label, run in runs.items():
                rows[set_name][label].append({"prompt": index, "new_tokens": new_tokens, **run})
            line = ", ".join(f"{label} {min(run['seconds']):.1f} s" for label, run in runs.items())
            print(f"{set_name}[{index}] {new_tokens} tokens: {line}", flush=True)
            (out / "partial.json").write_text(json.dumps(rows))
    report: dict[str, Any] = {
        "what": "tokens/s of the code kept set's speedup pick (context tokens) without and with a general guard, "
        "relative to the untrimmed draft, paired per prompt (median over prompts, 95% bootstrap CI); every output "
        "equal to the others' (and to the target alone's with --with-target)",
        "settings": {**vars(args), "target": Path(args.target).name, "draft": Path(args.draft).name},
        "guard": {"source": guard.source, "max_loss": guard.max_loss, "kind": guard.kind, "context_tokens": True},
        "picks": picks,
    }
    report["settings"]["alpaca"] = Path(args.alpaca).name
    report["settings"]["costs"] = Path(args.costs).name
    report["settings"]["out"] = Path(args.out).name
    for set_name, by_label in rows.items():
        report[set_name] = {}
        for label in [name for name in ("unguarded", "guarded", "target") if name in by_label]:
            median, ci = paired_ratios(by_label[label], by_label["untrimmed"])
            entry = {"vs_untrimmed_median": median, "vs_untrimmed_ci95": ci}
            if label in picks:
                entry["k"] = picks[label]["k"]
            report[set_name][label] = entry
        report[set_name]["per_prompt"] = by_label
    report["wall_seconds"] = time.perf_counter() - started
    (out / "guard.json").write_text(json.dumps(report, indent=2))
    (out / "partial.json").unlink(missing_ok=True)  # the crash copy: guard.json holds it all now
    for set_name in prompt_sets:
        for label in [name for name in ("unguarded", "guarded", "target") if name in report[set_name]]:
            row = report[set_name][label]
            lo, hi = row["vs_untrimmed_ci95"]
            k = row.get("k", "-")
            print(f"{set_name:>10} {label:>9} k={k!s:>7}: {row['vs_untrimmed_median']:.3f} [{lo:.3f}, {hi:.3f}]")
    print(f"wrote {out / 'guard.json'} in {report['wall_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
