"""What vLLM's local-argmax reduction saves a trimmed draft per step: the plugin's two greedy paths after the k-row
head's logits, timed side by side on this machine (torch only, the same operations as ``vllm_model.py``):

- V-wide (``compute_logits`` then vLLM's ``argmax``): a ``-inf`` row of width V, the k scores written at ``kept_ids``,
  argmax over V;
- local (``get_top_tokens``): max over the k scores, ``kept_ids[index]``.

The head's matmul is the same in both and is timed too (hidden 896: Qwen2.5-0.5B), so the saving is shown as a share
of head + reduction. Interleaved rounds, median.

    python benchmarks/vllm_local_argmax.py --out results/vllm/vllm_local_argmax.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

V, HIDDEN = 151936, 896


def _time(fn, repeats: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - started) / repeats * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", type=int, nargs="+", default=[1024, 8192, 36006])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--out", default="results/vllm/vllm_local_argmax.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for k in args.ks:
        kept = torch.randperm(V)[:k].sort().values
        head = torch.randn(k, HIDDEN) / HIDDEN**0.5
        for batch in args.batches:
            hidden = torch.randn(batch, HIDDEN)
            small = hidden @ head.T

            def v_wide(small: torch.Tensor = small, kept: torch.Tensor = kept) -> torch.Tensor:
                full = small.new_full((small.shape[0], V), float("-inf"))
                full[:, kept] = small
                return full.argmax(dim=-1)

            def local(small: torch.Tensor = small, kept: torch.Tensor = kept) -> torch.Tensor:
                return kept[small.max(dim=-1).indices]

            def matmul(hidden: torch.Tensor = hidden, head: torch.Tensor = head) -> torch.Tensor:
                return hidden @ head.T

            assert torch.equal(v_wide(), local())
            timed: dict[str, list[float]] = {"v_wide": [], "local": [], "head": []}
            for _ in range(args.rounds):
                for name, fn in (("v_wide", v_wide), ("local", local), ("head", matmul)):
                    timed[name].append(_time(fn, args.repeats))
            med = {name: statistics.median(values) for name, values in timed.items()}
            rows.append({"k": k, "batch": batch, "head_ms": med["head"], "v_wide_reduction_ms": med["v_wide"],
                         "local_reduction_ms": med["local"],
                         "saved_share_of_head_and_reduction": (med["v_wide"] - med["local"])
                         / (med["head"] + med["v_wide"])})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "vocab_size": V, "hidden": HIDDEN}
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
