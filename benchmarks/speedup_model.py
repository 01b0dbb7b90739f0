"""Validate the speedup model on a real pair: predicted speedup vs the speedup measured by spec_decode.py.

Step times come from independent micro-benchmarks on this machine (``hf_vocabtrim.profiling``: target 1-token step,
target verification of gamma + 1 tokens, draft step at each k); tau comes from the spec_decode run's acceptance
model (which equals the measured tau). Predicted speedup over the target alone = tau * t_target / (gamma * t_draft(k)
+ t_verify).

    python benchmarks/speedup_model.py --target DIR --draft DIR --spec results/spec_decode/spec_decode.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from hf_vocabtrim.acceptance import predicted_speedup
from hf_vocabtrim.profiling import profile_draft, time_assisted_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--draft", required=True)
    parser.add_argument("--spec", default="results/spec_decode/spec_decode.json")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="results/speedup_model.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = json.loads(Path(args.spec).read_text())
    gamma = spec["settings"]["num_assistant_tokens"]
    target = AutoModelForCausalLM.from_pretrained(args.target, dtype=torch.float32).eval()
    draft = AutoModelForCausalLM.from_pretrained(args.draft, dtype=torch.float32).eval()
    steps = time_assisted_steps(target, draft, gamma, prompt=128, rounds=5)
    ks = sorted({row["k"] for row in spec["configs"].values() if "k" in row})
    fit = profile_draft(draft, ks, prompt=128, steps=4, rounds=5)
    draft_ms = {p["k"]: p["ms"] for p in fit["points"]}
    vocab = fit["vocab_size"]
    rows = {}
    for key, row in spec["configs"].items():
        if "tau" not in row:
            continue
        k = row.get("k", vocab)
        predicted = float(
            predicted_speedup(row["predicted_tau"], draft_ms[k], steps["verify_ms"], steps["target_ms"], gamma)
        )
        rows[key] = {
            "k": k,
            "predicted_speedup_vs_target": predicted,
            "measured_speedup_vs_target": row["speedup_vs_target"],
            "relative_error": predicted / row["speedup_vs_target"] - 1.0,
        }
        print(
            f"{key:<40} predicted {predicted:.3f}  measured {row['speedup_vs_target']:.3f}  "
            f"error {rows[key]['relative_error']:+.1%}"
        )
    errors = [abs(r["relative_error"]) for r in rows.values()]
    result = {
        "step_times_ms": steps,
        "draft_ms": draft_ms,
        "configs": rows,
        "mean_abs_relative_error": sum(errors) / len(errors),
        "max_abs_relative_error": max(errors),
    }
    print(
        f"mean |error| {result['mean_abs_relative_error']:.1%}, max {result['max_abs_relative_error']:.1%}; "
        f"steps: {json.dumps(steps)}"
    )
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
