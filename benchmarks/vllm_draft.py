"""Trimmed drafts served by vLLM as draft models (``method: "draft_model"``, through this package's vLLM plugin).

The real pair of the HF benchmark (Qwen2.5-Coder-1.5B-Instruct target, 0.5B-Instruct draft, fp32 from the GGUF assets):
the target alone, the untrimmed draft, and the draft trimmed (``vocabtrim trim --plan``) in the mode each plan is for:

- ``context``: the context plan (``results/guard/optimize_guarded``, optimised with ``--context-tokens``) at
  ``--context-k`` (default: the plan's own k), served **with** context tokens (the plugin scores each request's own
  sequence ids beside the kept set);
- ``static_best``: a static kept set (the same order, context tokens off) at ``--static-k``: the best static k of the
  k sweep (``vllm_k_sweep.py``), served static.

Served paired and rotated per block of prompts (``vllm_bench.py``): HumanEval problems 82.. and Spec-Bench questions;
batch 1 and ``--batch`` concurrent requests; tokens/s, acceptance length from vLLM's counters; every output compared
with the target alone's.

    python benchmarks/vllm_draft.py --target TARGET_DIR --draft DRAFT_DIR --vllm-python VLLM_VENV/bin/python \\
        --work /tmp/vllm_drafts --out results/vllm --static-k 8192
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vllm_bench  # noqa: E402

from hf_vocabtrim.engines.vllm_serve import speculative_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CONTEXT_PLAN = ROOT / "results" / "guard" / "optimize_guarded"


def trim_drafts(draft: str, work: Path, static_k: int, context_k: int | None) -> dict[str, tuple[Path, int]]:
    """``vocabtrim trim --plan`` for the two served modes (see the module docstring)."""
    out = {}
    for name, k, flag in (("static_best", static_k, "--no-context-tokens"), ("context", context_k, "--context-tokens")):
        folder = work / f"draft_{name}_{k or 'plan'}"
        if not (folder / "config.json").exists():
            argv = ["trim", "--draft", draft, "--plan", str(CONTEXT_PLAN), flag, "--out", str(folder)]
            argv += ["--k", str(k)] if k else []
            subprocess.run([sys.executable, "-m", "hf_vocabtrim", *argv], check=True, stdout=subprocess.DEVNULL)
        out[name] = (folder, int(json.loads((folder / "config.json").read_text())["draft_vocab_size"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="target folder (Qwen2.5-Coder-1.5B-Instruct, safetensors)")
    parser.add_argument("--draft", required=True, help="draft folder (Qwen2.5-Coder-0.5B-Instruct, safetensors)")
    vllm_bench.add_serving_args(parser, speculative_tokens=5)
    parser.set_defaults(max_tokens=96)
    parser.add_argument("--static-k", type=int, required=True, help="k of static_best (the k sweep's best static k)")
    parser.add_argument("--context-k", type=int, default=None, help="k of the context plan (default: the plan's)")
    parser.add_argument("--configs", nargs="+", default=None, help="serve only these configurations")
    args = parser.parse_args()
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.target)
    trimmed = trim_drafts(args.draft, work, args.static_k, args.context_k)
    sets = vllm_bench.prompt_sets(tokenizer, args.prompts)
    spec = args.speculative_tokens
    configs: dict[str, dict | None] = {"target": None, "untrimmed": speculative_config("draft_model", args.draft, spec)}
    configs.update({name: speculative_config("draft_model", folder, spec) for name, (folder, _) in trimmed.items()})
    if args.configs:
        configs = {name: configs[name] for name in args.configs}
    done = vllm_bench.serve_blocks(
        args.target, configs, sets, max_tokens=args.max_tokens, blocks=args.blocks, batch=args.batch,
        python=args.vllm_python, log=out / "vllm_draft.log.jsonl",
    )  # fmt: skip
    alone = "target" if "target" in configs else "untrimmed"  # the target alone's outputs, or the untrimmed draft's
    table = vllm_bench.summarize(done, list(configs), list(sets), reference="untrimmed", target=alone)
    vocab = int(json.loads((Path(args.draft) / "config.json").read_text())["vocab_size"])
    ks = {"target": None, "untrimmed": vocab, **{name: k for name, (_, k) in trimmed.items()}}
    for rows in table.values():
        for name, row in rows.items():
            row["k"] = ks[name]
    report = {
        "engine": {**next(iter(done.values()))["engine"], "speculative_tokens": spec, "dtype": "float32"},
        "target": Path(args.target).name,
        "draft": Path(args.draft).name,
        "plans": {"context": str(CONTEXT_PLAN.relative_to(ROOT)), "static_best": str(CONTEXT_PLAN.relative_to(ROOT))},
        "context_tokens": {"context": True, "static_best": False},
        "settings": {k: getattr(args, k) for k in ("prompts", "max_tokens", "blocks", "batch")},
        **table,
    }
    sweep = out / "vllm_k_sweep.json"  # the k sweep's rows travel with the table (vllm_k_sweep.py writes them)
    if sweep.exists():
        report.update({key: json.loads(sweep.read_text())[key] for key in ("k_sweep", "context_overhead")})
    (out / "vllm_draft.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "vllm_draft.png")
    vllm_bench.print_table(table)


def plot(report: dict[str, Any], path: Path) -> None:
    """Tokens/s relative to the untrimmed draft (batch 1 with its 95% CI, and the batch group) and acceptance length
    per draft, both prompt sets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    names = [n for n in report["humaneval"] if n != "untrimmed"]
    for offset, (set_name, color) in enumerate((("humaneval", "tab:blue"), ("spec_bench", "tab:orange"))):
        rows = report[set_name]
        xs = [i + 0.18 * (2 * offset - 1) for i in range(len(names))]
        medians = [rows[n]["vs_untrimmed_batch1_median"] for n in names]
        low = [m - rows[n]["vs_untrimmed_batch1_ci95"][0] for m, n in zip(medians, names)]
        high = [rows[n]["vs_untrimmed_batch1_ci95"][1] - m for m, n in zip(medians, names)]
        axes[0].errorbar(xs, medians, yerr=[low, high], fmt="o", color=color, label=f"{set_name}, batch 1 (95% CI)")
        batch = [rows[n]["vs_untrimmed_batch8_median"] for n in names]
        axes[0].plot(xs, batch, "s", mfc="none", color=color, label=f"{set_name}, batch {report['settings']['batch']}")
        axes[1].bar(xs, [rows[n]["acceptance_length"] for n in names], width=0.35, color=color, label=set_name)
    for axis in axes:
        axis.set_xticks(range(len(names)), [f"{n}\nk={report['humaneval'][n]['k'] or 'n/a'}" for n in names])
        axis.legend(fontsize=8)
    axes[0].axhline(1.0, color="gray", ls=":")
    axes[0].set_ylabel("output tokens/s relative to the untrimmed draft")
    axes[1].axhline(report["humaneval"]["untrimmed"]["acceptance_length"], color="tab:blue", ls=":")
    axes[1].axhline(report["spec_bench"]["untrimmed"]["acceptance_length"], color="tab:orange", ls=":")
    axes[1].set_ylabel("acceptance length (dotted: the untrimmed draft)")
    fig.suptitle(f"trimmed drafts served by vLLM {report['engine']['vllm']} on {report['engine']['device']}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
