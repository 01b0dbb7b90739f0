"""Trimmed EAGLE-3 heads served by vLLM on this CPU: a real target, a fixture head, ``vocabtrim eagle3`` at several k.

1. The head (a fixture, ``eagle3_head.py``: SpecForge and vLLM's speculators train real heads): SpecForge's default
   draft vocabulary, the 32,000 ids most used in the target's own greedy replies to the training prompts (end of turn
   included; unused ids fill it by lower id), one Llama layer of the target's width, trained two drafting steps deep
   on the target's hidden states along those replies: HumanEval problems 0-81 and alpaca-eval instructions 0-95 and
   600-631, the replies of ``results/calibration_ab`` (the target's, max 128 tokens). Deterministic; its weights stay
   in ``--work``, outside the repository.
2. ``vocabtrim eagle3`` trims it: the optimiser's pick (U(k), alpha 0.5, coverage floor 0.9 on the counts of those
   same replies) and a sweep of k.
3. vLLM serves the target alone, the untrimmed head and every trimmed head, paired and rotated per block of prompts
   (``vllm_bench.py``): HumanEval problems 82.. and Spec-Bench questions (round robin over its categories), neither
   seen in training; batch 1 (one request at a time) and ``--batch`` concurrent requests; tokens/s, acceptance length
   and per-position acceptance from vLLM's counters; every output compared with the target alone's.

    python benchmarks/vllm_eagle3.py --target TARGET_DIR --vllm-python VLLM_VENV/bin/python \\
        --alpaca alpaca_eval/example/outputs.json --work /tmp/eagle3_work --out results/vllm
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import eagle3_head  # noqa: E402
import vllm_bench  # noqa: E402
from spec_decode import humaneval, humaneval_chat  # noqa: E402

from hf_vocabtrim.data.chats import ChatColumns, load_chats  # noqa: E402
from hf_vocabtrim.data.specials import end_of_reply_ids  # noqa: E402
from hf_vocabtrim.data.target_outputs import count_replies, generate_replies, prompt_ids  # noqa: E402
from hf_vocabtrim.engines.eagle3 import load_head  # noqa: E402
from hf_vocabtrim.engines.vllm_serve import speculative_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ROWS = 32_000
SWEEP = [16_384, 8_192, 4_096, 2_048]


def training_rows(alpaca: str) -> dict[str, list[dict[str, Any]]]:
    """The prompts whose target replies ``results/calibration_ab`` holds (same rows, same order)."""
    problems = humaneval()
    code = [{"messages": humaneval_chat(p)} for p in problems[: len(problems) // 2]]
    general = list(load_chats(alpaca, columns=ChatColumns(prompt="instruction", response="output")))
    return {
        "code_calibration": code[:41],
        "code_heldout": code[41:82],
        "general_calibration": general[:96],
        "general_heldout": general[600:632],
    }


def build_head(args: argparse.Namespace, target: Any, tokenizer: Any, work: Path) -> tuple[Path, Path, dict]:
    """The untrimmed head (``work/head``) and the counts of the replies it was trained on (``work/counts.json``)."""
    head_dir, counts_file = work / "head", work / "counts.json"
    if (head_dir / "model.safetensors").exists() and counts_file.exists():
        return head_dir, counts_file, json.loads((head_dir / "config.json").read_text())["fixture"]
    prompts, replies = [], []
    for name, rows in training_rows(args.alpaca).items():
        generations = work / f"{name}.generations.jsonl"  # a copy: the committed files stay as they are
        if not generations.exists():
            shutil.copy(ROOT / "results" / "calibration_ab" / f"{name}.generations.jsonl", generations)
        replies += generate_replies(target, tokenizer, rows, max_new_tokens=128, batch_size=4, generations=generations)
        prompts += [prompt_ids(tokenizer, row["messages"]) for row in rows]
    counts = count_replies(replies, tokenizer, "the target's replies to the head's training prompts")
    counts.save(counts_file)
    ends = end_of_reply_ids(tokenizer, target.generation_config)
    kept = eagle3_head.draft_vocabulary(replies, ROWS, len(tokenizer), ends)
    aux = eagle3_head.default_aux_layers(target.config.num_hidden_layers)
    config = eagle3_head.head_config(target.config, len(kept), aux)
    started = time.perf_counter()
    rows = eagle3_head.collect(target, [p + r for p, r in zip(prompts, replies)], [len(p) for p in prompts], aux)
    for row in rows:  # the head trains on the replies and the last --head-context prompt tokens before them
        cut = max(row["start"] - args.head_context, 0)
        row.update(ids=row["ids"][cut:], aux=row["aux"][cut:], greedy=row["greedy"][cut:], start=row["start"] - cut)
    collect_s = time.perf_counter() - started
    head, info = eagle3_head.train_head(
        target, rows, config, kept, epochs=args.epochs, lr=args.lr, tokens_per_step=1024, steps=2, seed=0
    )
    info.update(
        rows=int(len(kept)),
        used_ids=int((counts.counts > 0).sum()),
        training_sequences=len(rows),
        aux_layers=aux,
        head_context=args.head_context,
        hidden_states_s=collect_s,
        train_s=time.perf_counter() - started - collect_s,
    )
    eagle3_head.save(head, kept, head_dir, info)
    return head_dir, counts_file, info


def trim_heads(head_dir: Path, counts_file: Path, target_dir: str, work: Path) -> tuple[dict[str, Path], int]:
    """``vocabtrim eagle3``: the optimiser's pick and the sweep; returns the folders by k and the pick's k."""
    folders: dict[str, Path] = {str(ROWS): head_dir}
    common = ["--draft", str(head_dir), "--counts", str(counts_file), "--tokenizer", target_dir]
    pick_dir = work / "head_pick"
    if not (pick_dir / "model.safetensors").exists():
        argv = ["eagle3", *common, "--min-coverage", "0.9", "--alpha", "0.5", "--out", str(pick_dir)]
        subprocess.run([sys.executable, "-m", "hf_vocabtrim", *argv], check=True)
    pick = load_head(pick_dir).draft_vocab_size
    folders[str(pick)] = pick_dir
    for k in SWEEP:
        out = work / f"head_{k}"
        if not (out / "model.safetensors").exists():
            argv = ["eagle3", *common, "--k", str(k), "--out", str(out)]
            subprocess.run([sys.executable, "-m", "hf_vocabtrim", *argv], check=True)
        folders[str(k)] = out
    return folders, pick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", required=True, help="target folder (safetensors; Qwen2.5-Coder-1.5B-Instruct)")
    vllm_bench.add_serving_args(parser, speculative_tokens=3)
    parser.add_argument("--alpaca", required=True, help="alpaca-eval example/outputs.json")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--head-context", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work, out = Path(args.work), Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.target)
    target = AutoModelForCausalLM.from_pretrained(args.target, dtype=torch.float32).eval()
    head_dir, counts_file, info = build_head(args, target, tokenizer, work)
    del target
    folders, pick = trim_heads(head_dir, counts_file, args.target, work)
    sets = vllm_bench.prompt_sets(tokenizer, args.prompts)
    configs: dict[str, dict | None] = {"target": None}
    configs.update({k: speculative_config("eagle3", folder, args.speculative_tokens) for k, folder in folders.items()})
    done = vllm_bench.serve_blocks(
        args.target, configs, sets, max_tokens=args.max_tokens, blocks=args.blocks, batch=args.batch,
        python=args.vllm_python, log=out / "vllm_eagle3.log.jsonl",
    )  # fmt: skip
    table = vllm_bench.summarize(done, list(configs), list(sets), reference=str(ROWS), target="target")
    engine = next(iter(done.values()))["engine"]
    report = {
        "engine": {**engine, "speculative_tokens": args.speculative_tokens, "dtype": "float32"},
        "target": Path(args.target).name,
        "head": {"rows": ROWS, **info},
        "pick_k": pick,
        "untrimmed_k": ROWS,
        "settings": {k: getattr(args, k) for k in ("prompts", "max_tokens", "blocks", "batch")},
        **{name: {k: v for k, v in rows.items() if k != "target"} for name, rows in table.items()},
        "target_alone": {name: rows["target"] for name, rows in table.items()},
        "pick_summary": json.loads((folders[str(pick)].parent / "head_pick.report" / "summary.json").read_text()),
    }
    (out / "vllm_eagle3.json").write_text(json.dumps(report, indent=2))
    plot(report, out / "vllm_eagle3.png")
    vllm_bench.print_table(table)


def plot(report: dict[str, Any], path: Path) -> None:
    """Acceptance length and tokens/s (batch 1 and the batch group) vs k, both prompt sets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    for name, style in (("humaneval", "-"), ("spec_bench", "--")):
        rows = report[name]
        ks = sorted(int(k) for k in rows)
        axes[0].plot(ks, [rows[str(k)]["acceptance_length"] for k in ks], style, marker="o", label=name)
        axes[1].plot(ks, [rows[str(k)]["tok_s_batch1"] for k in ks], style, marker="o", label=f"{name}, batch 1")
        axes[1].plot(ks, [rows[str(k)]["tok_s_batch8"] for k in ks], style, marker="s", label=f"{name}, batch 8")
        for axis, key in ((axes[1], "tok_s_batch1"),):
            axis.axhline(report["target_alone"][name][key], ls=":", color="gray")
    for axis in axes:
        axis.axvline(report["pick_k"], color="tab:red", lw=1, label=f"optimiser's pick k = {report['pick_k']:,}")
        axis.set_xscale("log")
        axis.set_xlabel("head rows kept (k)")
        axis.legend(fontsize=8)
    axes[0].set_ylabel("acceptance length (vLLM: 1 + accepted / drafts)")
    axes[1].set_ylabel("output tokens/s (dotted: the target alone, batch 1)")
    device = report["engine"]["device"]
    fig.suptitle(f"EAGLE-3 head trimmed by vocabtrim, served by vLLM {report['engine']['vllm']} on {device}")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
