"""TPE's pick vs the exact optimum of U(k) on a real tokenizer and real data, over seeds and settings.

python benchmarks/tpe_gap.py --tokenizer DRAFT_DIR --draft-config DRAFT_DIR --data alpaca_eval/example/outputs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from transformers import AutoTokenizer

from hf_vocabtrim.data.chats import ChatColumns, load_chats
from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.loaders import load_draft_config
from hf_vocabtrim.selection.planning import Utility, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--draft-config", required=True)
    parser.add_argument("--data", required=True, help="alpaca-eval example/outputs.json")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--out", default="results/tpe_gap.json")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows = list(load_chats(args.data, columns=ChatColumns(prompt="instruction", response="output")))
    counts = count_tokens(tokenizer, rows[:600], source="alpaca-eval outputs[:600]", progress=False)
    heldout = count_tokens(tokenizer, rows[600:], source="alpaca-eval outputs[600:]", progress=False)
    config = load_draft_config(args.draft_config)
    runs = []
    settings = [(0.5, 0.9, "calibration"), (0.7, 0.95, "calibration"), (0.5, 0.9, "heldout"), (0.3, 0.8, "heldout")]
    for alpha, c_min, coverage in settings:
        for seed in range(args.seeds):
            result = plan(
                counts,
                config,
                objective=Utility(alpha),
                min_coverage=c_min,
                n_trials=args.trials,
                seed=seed,
                heldout=heldout,
                coverage_basis=coverage,
                progress=False,
            )
            choice = result.choice
            runs.append(
                {
                    "alpha": alpha,
                    "min_coverage": c_min,
                    "objective_coverage": coverage,
                    "seed": seed,
                    "k": choice.k,
                    "exact_k": choice.exact_k,
                    "utility": choice.value,
                    "exact_utility": choice.exact_value,
                    "tpe_gap": choice.gap,
                }
            )
            print(json.dumps(runs[-1]))
    gaps = [r["tpe_gap"] for r in runs]
    summary = {
        "tokenizer": args.tokenizer,
        "draft_config": args.draft_config,
        "trials": args.trials,
        "calibration_tokens": counts.num_tokens,
        "heldout_tokens": heldout.num_tokens,
        "runs": runs,
        "max_gap": max(gaps),
        "median_gap": statistics.median(gaps),
        "within_0.1%": sum(g <= 0.001 for g in gaps),
        "of": len(gaps),
    }
    print(
        f"TPE gap to the exact optimum over {len(gaps)} runs: median {summary['median_gap']:.5%}, max "
        f"{summary['max_gap']:.5%}; within 0.1%: {summary['within_0.1%']}/{len(gaps)}"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
