"""Paired, rotated measurements of speculative decoding served by vLLM (shared by ``vllm_eagle3.py`` and
``vllm_draft.py``).

vLLM builds a draft (an EAGLE-3 head, a draft model) into its engine, so each configuration is its own engine. The
prompts are served in blocks: in block b every configuration gets an engine in turn (order rotated by b, so drift
of this shared machine hits every configuration alike) and serves the block's prompts one at a time (batch 1: each
prompt is a request alone) and then one group of ``batch`` prompts sent together (concurrent requests; vLLM batches
them). Every configuration thus serves every prompt within minutes of the others: per prompt, tokens/s ratios
against a reference configuration are paired, and summarised by their median and a 95% bootstrap interval over
prompts. Each engine runs in its own process (``hf_vocabtrim.engines.vllm_serve``), in the Python given (the vLLM
environment). Greedy, ``ignore_eos``: every configuration must produce exactly the target alone's tokens.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spec_decode import bootstrap_ci, humaneval, humaneval_chat, spec_bench  # noqa: E402

from hf_vocabtrim.data.target_outputs import prompt_ids  # noqa: E402
from hf_vocabtrim.engines.vllm_serve import acceptance_length, run_plan  # noqa: E402


def add_serving_args(parser: Any, speculative_tokens: int) -> None:
    """The flags both vLLM benchmarks share: where vLLM is, where results go, and what is served."""
    root = Path(__file__).resolve().parents[1]
    parser.add_argument("--vllm-python", required=True, help="python of an environment with vLLM and hf-vocabtrim")
    parser.add_argument("--work", required=True, help="folder for the drafts made here (not committed)")
    parser.add_argument("--out", default=str(root / "results" / "vllm"))
    parser.add_argument("--prompts", type=int, default=8, help="prompts per set")
    parser.add_argument("--max-tokens", type=int, default=48, help="new tokens per request")
    parser.add_argument("--blocks", type=int, default=4, help="blocks of prompts (engines per configuration)")
    parser.add_argument("--batch", type=int, default=8, help="concurrent requests of the batch group")
    parser.add_argument("--speculative-tokens", type=int, default=speculative_tokens)


def prompt_sets(tokenizer: Any, prompts: int) -> dict[str, list[list[int]]]:
    """The served prompts' ids: HumanEval problems 82.. (the head's and the plans' calibration used 0-81) and
    Spec-Bench questions (round robin over its categories), ``prompts`` of each."""
    return {
        "humaneval": [prompt_ids(tokenizer, humaneval_chat(p)) for p in humaneval()[82 : 82 + prompts]],
        "spec_bench": [prompt_ids(tokenizer, messages) for messages in spec_bench(prompts)],
    }


def serve_blocks(
    target: str,
    configs: dict[str, dict | None],
    sets: dict[str, list[list[int]]],
    *,
    max_tokens: int,
    blocks: int,
    batch: int,
    python: str,
    log: Path,
) -> dict[str, Any]:
    """Serve every set's prompts with every configuration, block by block (see the module docstring). Returns, per
    set and configuration, one record per prompt (``seconds``, ``tokens``, ``outputs``, ``metrics``) and the batch
    groups (``seconds``, ``tokens``, ``metrics``, ``block``), plus the engines' start-up times; ``log`` gets one JSON
    line per engine (resumable: blocks already there are not served again)."""
    names = list(configs)
    done = {}
    if log.exists():
        for line in log.read_text().splitlines():
            record = json.loads(line)
            done[(record["block"], record["config"])] = record
    size = {name: -(-len(prompts) // blocks) for name, prompts in sets.items()}
    for block in range(blocks):
        chosen = {
            name: list(range(block * size[name], min((block + 1) * size[name], len(p)))) for name, p in sets.items()
        }
        group_set = list(sets)[block % len(sets)]  # the batch group of this block: sets take turns
        shift = block % len(names)
        for config in names[shift:] + names[:shift]:
            if (block, config) in done:
                continue
            prompts, groups, where = [], [], []
            for set_name, indices in chosen.items():
                for index in indices:
                    groups.append({"prompts": [len(prompts)], "max_tokens": max_tokens})
                    where.append((set_name, index))
                    prompts.append(sets[set_name][index])
            start = len(prompts)
            picked = [(block * batch + i) % len(sets[group_set]) for i in range(batch)]
            prompts += [sets[group_set][i] for i in picked]
            groups.append({"prompts": list(range(start, start + batch)), "max_tokens": max_tokens})
            longest = max(map(len, prompts)) + max_tokens + 16
            plan = {"target": target, "speculative": configs[config], "prompts": prompts, "groups": groups}
            plan["max_model_len"] = max(1024, longest)
            began = time.perf_counter()
            result = run_plan(plan, python=python, timeout=7200)
            record = {
                "block": block,
                "config": config,
                "wall_s": time.perf_counter() - began,
                "startup_s": result["startup_s"],
                "engine": result["engine"],
                "singles": [
                    {"set": s, "prompt": i, **{k: g[k] for k in ("seconds", "tokens", "outputs", "metrics")}}
                    for (s, i), g in zip(where, result["groups"][:-1])
                ],
                "batch": {"set": group_set, "prompts": picked, **result["groups"][-1]},
            }
            with log.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
            done[(block, config)] = record
            print(
                f"block {block} {config:>14}: {sum(x['tokens'] for x in record['singles'])} tokens one by one in "
                f"{sum(x['seconds'] for x in record['singles']):.1f} s, batch of {batch} "
                f"{record['batch']['tokens'] / record['batch']['seconds']:.2f} tok/s "
                f"(start-up {record['startup_s']:.0f} s)",
                flush=True,
            )
    return {key: value for key, value in done.items() if key[0] < blocks}


def summarize(
    done: dict[tuple[int, str], dict[str, Any]], configs: list[str], sets: list[str], reference: str, target: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per set and configuration: tokens/s at batch 1 (all prompts) and at the batch size, acceptance length and
    per-position acceptance (vLLM's counters over the single requests), the paired ratios against ``reference``
    and ``target`` (median, 95% CI over prompts at batch 1; median over blocks at the batch size) and whether every
    output equals the target alone's."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for set_name in sets:
        singles = {c: {} for c in configs}
        batches = {c: {} for c in configs}
        for (block, config), record in done.items():
            for row in record["singles"]:
                if row["set"] == set_name:
                    singles[config][row["prompt"]] = row
            if record["batch"]["set"] == set_name:
                batches[config][block] = record["batch"]
        prompts = sorted(singles[target])
        rows = {}
        for config in configs:
            mine = [singles[config][p] for p in prompts]
            drafts = sum(r["metrics"]["drafts"] for r in mine)
            accepted = sum(r["metrics"]["accepted"] for r in mine)
            positions = [
                sum(v) for v in zip(*[r["metrics"]["per_position"] for r in mine if r["metrics"]["per_position"]])
            ]
            row: dict[str, Any] = {
                "tok_s_batch1": sum(r["tokens"] for r in mine) / sum(r["seconds"] for r in mine),
                "tok_s_batch8": _batch_rate(batches[config]),
                "acceptance_length": acceptance_length({"drafts": drafts, "accepted": accepted}),
                "per_position_acceptance": [a / drafts for a in positions] if drafts else [],
                "lossless": all(singles[config][p]["outputs"] == singles[target][p]["outputs"] for p in prompts)
                and all(batches[config][b]["outputs"] == batches[target][b]["outputs"] for b in batches[target]),
                "prompts": len(prompts),
            }
            for base, label in ((reference, "untrimmed"), (target, "target")):
                ratios = [
                    (singles[base][p]["seconds"] / singles[base][p]["tokens"])
                    / (singles[config][p]["seconds"] / singles[config][p]["tokens"])
                    for p in prompts
                ]
                row[f"vs_{label}_batch1_median"] = statistics.median(ratios)
                row[f"vs_{label}_batch1_ci95"] = bootstrap_ci(ratios)
                batch_ratios = [
                    (batches[config][b]["tokens"] / batches[config][b]["seconds"])
                    / (batches[base][b]["tokens"] / batches[base][b]["seconds"])
                    for b in batches[base]
                ]
                row[f"vs_{label}_batch8_median"] = statistics.median(batch_ratios) if batch_ratios else None
                row[f"vs_{label}_batch8_blocks"] = len(batch_ratios)
            rows[config] = row
        out[set_name] = rows
    return out


def print_table(table: dict[str, dict[str, dict[str, Any]]]) -> None:
    """One line per set and configuration of :func:`summarize`'s table."""

    def shown(value: float | None, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    for set_name, rows in table.items():
        print(f"[{set_name}]")
        for name, row in rows.items():
            low, high = row["vs_untrimmed_batch1_ci95"]
            k = f" (k={row['k']})" if row.get("k") else ""
            print(
                f"  {name:>10}{k}: {row['tok_s_batch1']:.2f} tok/s (x{row['vs_untrimmed_batch1_median']:.3f} "
                f"[{low:.3f}, {high:.3f}]), batch {shown(row['tok_s_batch8'], 2)} tok/s "
                f"(x{shown(row['vs_untrimmed_batch8_median'], 3)}), acceptance length {row['acceptance_length']:.3f}, "
                f"lossless {row['lossless']}"
            )


def _batch_rate(groups: dict[int, dict[str, Any]]) -> float | None:
    if not groups:
        return None
    return sum(g["tokens"] for g in groups.values()) / sum(g["seconds"] for g in groups.values())
