"""How small can k go in vLLM with context tokens? The real pair (Qwen2.5-Coder-1.5B-Instruct target, 0.5B-Instruct
draft, fp32), the draft trimmed to the top k of the guarded keep plan's order (``results/guard/optimize_guarded``)
for each k of ``--ks``, with context tokens on and off, served by vLLM as ``draft_model`` drafts.

Two phases, each resumable (one JSON line per engine in ``--out``/vllm_k_sweep.log.jsonl):

- ``acceptance``: each configuration serves the 8 HumanEval problems (82..) and 8 Spec-Bench questions of
  ``vllm_draft.py`` (greedy, ``--max-tokens`` new tokens, ``--speculative-tokens`` per round); acceptance length
  from vLLM's counters, per set; every output compared with the untrimmed draft's (lossless: equal to the target's).
  Acceptance does not depend on the machine's load.
- ``timing``: the draft alone served by vLLM as a model (one request of ``--seq-tokens`` synthetic prompt ids, 64 new
  tokens, ``ignore_eos``, the prompt prefix-cached after the first request): decode ms per token = (time for 65
  tokens - time for 1 token) / 64, configurations
  interleaved and repeated (median). Context cost does not depend on the ids' values, only on how many are
  distinct: the synthetic prompts draw distinct ids (the worst case for a given length).

    python benchmarks/vllm_k_sweep.py --phase acceptance --target T --draft D --vllm-python VLLM/bin/python --work W
    python benchmarks/vllm_k_sweep.py --phase timing --draft D --vllm-python VLLM/bin/python --work W
    python benchmarks/vllm_k_sweep.py --phase report
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import vllm_bench  # noqa: E402

from hf_vocabtrim.engines.vllm_serve import run_plan, speculative_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLAN = ROOT / "results" / "guard" / "optimize_guarded"
KS = [1024, 4096, 8192, 22525, 36006]


def trimmed(draft: str, work: Path, k: int, context: bool) -> Path:
    """``vocabtrim trim --plan PLAN --k K`` with context tokens on or off (made once)."""
    folder = work / f"draft_k{k}_{'context' if context else 'static'}"
    if not (folder / "config.json").exists():
        flag = "--context-tokens" if context else "--no-context-tokens"
        argv = ["trim", "--draft", draft, "--plan", str(PLAN), "--k", str(k), flag, "--out", str(folder)]
        subprocess.run([sys.executable, "-m", "hf_vocabtrim", *argv], check=True, stdout=subprocess.DEVNULL)
    return folder


def configs(draft: str, work: Path, ks: list[int]) -> dict[str, tuple[int | None, bool, str]]:
    """name -> (k, context tokens, folder); k None for the untrimmed draft."""
    out: dict[str, tuple[int | None, bool, str]] = {"untrimmed": (None, False, draft)}
    for k in ks:
        for context in (False, True):
            out[f"k{k}_{'context' if context else 'static'}"] = (k, context, str(trimmed(draft, work, k, context)))
    return out


def _log(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    return {(r["phase"], r["config"], r.get("seq_tokens")): r for r in map(json.loads, path.read_text().splitlines())}


def acceptance(args: argparse.Namespace, log: Path) -> None:
    from transformers import AutoTokenizer

    sets = vllm_bench.prompt_sets(AutoTokenizer.from_pretrained(args.target), 8)
    prompts = sets["humaneval"] + sets["spec_bench"]
    groups = [{"prompts": list(range(8)), "max_tokens": args.max_tokens},
              {"prompts": list(range(8, 16)), "max_tokens": args.max_tokens}]  # fmt: skip
    done = _log(log)
    for name, (k, context, folder) in configs(args.draft, Path(args.work), args.ks).items():
        if ("acceptance", name, None) in done:
            continue
        plan = {"target": args.target, "prompts": prompts, "groups": groups, "max_model_len": 2048,
                "speculative": speculative_config("draft_model", folder, args.speculative_tokens)}  # fmt: skip
        result = run_plan(plan, python=args.vllm_python, timeout=7200)
        sets = zip(("humaneval", "spec_bench"), result["groups"])
        record = {
            "phase": "acceptance",
            "config": name,
            "k": k,
            "context_tokens": context,
            "engine": result["engine"],
            "groups": [{"set": s, "outputs": g["outputs"], "metrics": g["metrics"]} for s, g in sets],
        }
        with log.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        shown = [round(g["metrics"]["acceptance_length"], 3) for g in record["groups"]]
        print(f"{name:>18}: acceptance length humaneval / spec_bench {shown}", flush=True)


def timing(args: argparse.Namespace, log: Path) -> None:
    """Decode ms/token of the draft alone, configurations interleaved per repeat (see the module docstring)."""
    names = configs(args.draft, Path(args.work), args.ks)
    if args.configs:
        names = {name: names[name] for name in args.configs}
    rng = random.Random(0)
    for seq in args.seq_tokens:
        prompt = rng.sample(range(200, 150000), seq)  # distinct ids: the most context columns for this length
        done = _log(log)
        for repeat in range(args.repeats):
            order = list(names)[repeat % len(names) :] + list(names)[: repeat % len(names)]
            for name in order:
                key = ("timing", f"{name}#{repeat}", seq)
                if key in done:
                    continue
                _, _, folder = names[name]
                pair = [{"prompts": [0], "max_tokens": 1}, {"prompts": [0], "max_tokens": 65}]
                plan = {"target": folder, "speculative": None, "prompts": [prompt], "max_model_len": seq + 80,
                        "groups": pair * 2}  # fmt: skip
                # prefix caching (vLLM's default) computes the prompt once: later groups time decoding, not prefill
                result = run_plan(plan, python=args.vllm_python, timeout=3600)
                one, many = result["groups"][2]["seconds"], result["groups"][3]["seconds"]  # after a warm-up pair
                record = {"phase": "timing", "config": f"{name}#{repeat}", "seq_tokens": seq,
                          "decode_ms_per_token": 1000 * (many - one) / 64, "engine": result["engine"]}  # fmt: skip
                with log.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
                print(f"{seq:>6} tokens {name:>18} #{repeat}: {record['decode_ms_per_token']:.1f} ms/token", flush=True)


def report(args: argparse.Namespace, log: Path) -> dict[str, Any]:
    """``k_sweep`` rows and ``context_overhead`` rows from the log; the PNG beside it."""
    records = list(_log(log).values())
    accept = {r["config"]: r for r in records if r["phase"] == "acceptance"}
    times: dict[tuple[str, int], list[float]] = {}
    for r in records:
        if r["phase"] == "timing":
            times.setdefault((r["config"].split("#")[0], r["seq_tokens"]), []).append(r["decode_ms_per_token"])
    base = accept.get("untrimmed")
    rows = []
    for name, r in accept.items():
        per_set = {g["set"]: g for g in r["groups"]}
        lossless = base is not None and all(
            g["outputs"] == {b["set"]: b for b in base["groups"]}[s]["outputs"] for s, g in per_set.items()
        )
        ms = times.get((name, min(args.seq_tokens)))
        rows.append({"k": r["k"] or 151936, "context_tokens": r["context_tokens"],
                     "acceptance_length_humaneval": per_set["humaneval"]["metrics"]["acceptance_length"],
                     "acceptance_length_spec_bench": per_set["spec_bench"]["metrics"]["acceptance_length"],
                     "draft_ms_per_token": statistics.median(ms) if ms else None, "lossless": lossless})  # fmt: skip
    rows.sort(key=lambda row: (row["k"], row["context_tokens"]))
    untrimmed = next((r for r in rows if r["k"] == 151936 and r["draft_ms_per_token"]), None)
    verify = None if untrimmed is None else untrimmed["draft_ms_per_token"] * verify_steps(args.speculative_tokens)
    for row in rows:  # the speedup model: tokens per round / (gamma draft steps + the target's verification)
        if untrimmed is None or verify is None or not row["draft_ms_per_token"]:
            continue
        gamma = args.speculative_tokens
        cost = (gamma * untrimmed["draft_ms_per_token"] + verify) / (gamma * row["draft_ms_per_token"] + verify)
        for name in ("humaneval", "spec_bench"):
            tau = row[f"acceptance_length_{name}"] / untrimmed[f"acceptance_length_{name}"]
            row[f"predicted_vs_untrimmed_{name}"] = tau * cost
    overhead = []
    for (name, seq), values in sorted(times.items()):
        if name.endswith("_context"):
            static = times.get((name.replace("_context", "_static"), seq))
            if static:
                ctx, stat = statistics.median(values), statistics.median(static)
                overhead.append({"seq_tokens": seq, "k": int(name[1:].split("_")[0]), "static_ms": stat,
                                 "context_ms": ctx, "ratio": ctx / stat})  # fmt: skip
    engine = next((r["engine"] for r in records), {})
    return {"engine": engine, "plan": str(PLAN.relative_to(ROOT)), "max_tokens": args.max_tokens,
            "speculative_tokens": args.speculative_tokens, "verify_ms_modelled": verify,
            "k_sweep": rows, "context_overhead": overhead}  # fmt: skip


def verify_steps(gamma: int) -> float:
    """The rest of a round (the target's verification and vLLM's bookkeeping) in untrimmed-draft decode steps, from
    ``vllm_step_share.json``: the untrimmed draft was there ``share`` of a HumanEval round of ``vllm_draft.py`` on
    this kind of machine, so the rest is gamma x (1 / share - 1) of its steps (scaled by this run's own step)."""
    share = json.loads((ROOT / "results" / "vllm" / "vllm_step_share.json").read_text())
    return gamma * (1 / share["draft_share_of_round_humaneval"]["untrimmed"] - 1)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), constrained_layout=True)
    for context, style in ((False, "--"), (True, "-")):
        rows = [r for r in result["k_sweep"] if r["context_tokens"] == context or r["k"] == 151936]
        label = "with context tokens" if context else "static kept set"
        for key, color in (("acceptance_length_humaneval", "tab:blue"), ("acceptance_length_spec_bench", "tab:orange")):
            axes[0].plot([r["k"] for r in rows], [r[key] for r in rows], style, marker="o", color=color,
                         label=f"{key.split('_')[-1] if 'bench' not in key else 'spec_bench'}, {label}")  # fmt: skip
        timed = [r for r in rows if r["draft_ms_per_token"]]
        axes[1].plot([r["k"] for r in timed], [r["draft_ms_per_token"] for r in timed], style, marker="o",
                     color="tab:green", label=label)  # fmt: skip
        for name, color in (("humaneval", "tab:blue"), ("spec_bench", "tab:orange")):
            modelled = [r for r in timed if f"predicted_vs_untrimmed_{name}" in r]
            axes[2].plot([r["k"] for r in modelled], [r[f"predicted_vs_untrimmed_{name}"] for r in modelled], style,
                         marker="o", color=color, label=f"{name}, {label}")  # fmt: skip
    for axis in axes:
        axis.set_xscale("log")
        axis.set_xlabel("k (static kept ids; V = 151,936 is the untrimmed draft)")
        axis.legend(fontsize=8)
    axes[0].set_ylabel("acceptance length (vLLM counters)")
    axes[1].set_ylabel("draft decode ms/token (draft alone in vLLM)")
    axes[2].axhline(1.0, color="gray", ls=":")
    axes[2].set_ylabel("tokens/s vs the untrimmed draft (speedup model)")
    fig.suptitle(f"Qwen2.5-Coder 0.5B draft for 1.5B in vLLM {result['engine'].get('vllm', '')}, "
                 f"{result['engine'].get('device', '')}")  # fmt: skip
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=["acceptance", "timing", "report"], required=True)
    parser.add_argument("--target", default=None, help="target folder (acceptance)")
    parser.add_argument("--draft", default=None, help="draft folder (Qwen2.5-Coder-0.5B-Instruct, safetensors)")
    parser.add_argument("--vllm-python", default=None, help="python of an environment with vLLM and hf-vocabtrim")
    parser.add_argument("--work", default=None, help="folder for the trimmed drafts (not committed)")
    parser.add_argument("--out", default=str(ROOT / "results" / "vllm"))
    parser.add_argument("--ks", type=int, nargs="+", default=KS)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--speculative-tokens", type=int, default=5)
    parser.add_argument("--seq-tokens", type=int, nargs="+", default=[512, 8192], help="timing: prompt lengths")
    parser.add_argument("--repeats", type=int, default=3, help="timing: engines per configuration and length")
    parser.add_argument("--configs", nargs="+", default=None, help="timing: only these configurations")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "vllm_k_sweep.log.jsonl"
    if args.phase == "acceptance":
        acceptance(args, log)
    elif args.phase == "timing":
        timing(args, log)
    result = report(args, log)
    (out / "vllm_k_sweep.json").write_text(json.dumps(result, indent=2))
    if result["k_sweep"]:
        plot(result, out / "vllm_k_sweep.png")
    print(json.dumps(result["k_sweep"], indent=1))


if __name__ == "__main__":
    main()
