"""How much of a vLLM speculative round the draft is, on this machine: each draft served alone by vLLM (the untrimmed
0.5B and the trimmed ones, ``TrimmedDraftModel`` folders through the plugin) and the target alone, batch 1, decode
time per token = (time for 40 new tokens - time for 8) / 32, medians over prompts, configurations rotated per
prompt. With the rounds of ``vllm_draft.py`` (seconds and vLLM's draft count per request) it gives the draft's share
of a round, gamma x draft step / round, and what trimming can save at most.

    python benchmarks/vllm_step_share.py --target TARGET --draft DRAFT --vllm-python PY --work /tmp/vllm_drafts
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spec_decode import humaneval, humaneval_chat  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from hf_vocabtrim.data.target_outputs import prompt_ids  # noqa: E402
from hf_vocabtrim.engines.vllm_serve import run_plan  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True)
    parser.add_argument("--draft", required=True)
    parser.add_argument("--vllm-python", required=True)
    parser.add_argument("--work", required=True, help="the folder of vllm_draft.py's trimmed drafts")
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--out", default=str(ROOT / "results" / "vllm"))
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.target)
    prompts = [prompt_ids(tokenizer, humaneval_chat(p)) for p in humaneval()[82 : 82 + args.prompts]]
    models = {"target": args.target, "untrimmed": args.draft}
    models.update({name: str(Path(args.work) / f"draft_{name}") for name in ("code", "guarded", "general")})
    names = list(models)
    per_token: dict[str, list[float]] = {name: [] for name in names}
    for index, prompt in enumerate(prompts):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            groups = [{"prompts": [0], "max_tokens": n} for n in (8, 40, 8, 40)]
            plan = {"target": models[name], "speculative": None, "prompts": [prompt], "groups": groups}
            result = run_plan(plan, python=args.vllm_python, timeout=1800)
            short = min(result["groups"][0]["seconds"], result["groups"][2]["seconds"])
            long = min(result["groups"][1]["seconds"], result["groups"][3]["seconds"])
            per_token[name].append((long - short) / 32 * 1000)
            print(f"prompt {index} {name:>9}: {per_token[name][-1]:.1f} ms per decoded token", flush=True)
    step_ms = {name: statistics.median(values) for name, values in per_token.items()}
    report: dict = {"engine": result["engine"], "prompts": len(prompts), "decode_ms_per_token": step_ms}
    draft_log = Path(args.out) / "vllm_draft.log.jsonl"
    if draft_log.exists():  # rounds of vllm_draft.py: the draft's share of a round, per configuration (HumanEval)
        gamma = json.loads((Path(args.out) / "vllm_draft.json").read_text())["engine"]["speculative_tokens"]
        shares = {}
        for line in draft_log.read_text().splitlines():
            record = json.loads(line)
            if record["config"] not in step_ms or record["config"] == "target":
                continue
            for row in record["singles"]:
                if row["set"] == "humaneval" and row["metrics"]["drafts"]:
                    round_ms = row["seconds"] / row["metrics"]["drafts"] * 1000
                    shares.setdefault(record["config"], []).append(gamma * step_ms[record["config"]] / round_ms)
        report["draft_share_of_round_humaneval"] = {name: statistics.median(v) for name, v in shares.items()}
        report["gamma"] = gamma
    (Path(args.out) / "vllm_step_share.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
