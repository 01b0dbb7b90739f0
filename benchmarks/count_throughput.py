"""Assistant tokens/s of ``count_tokens`` vs the fast tokenizer alone (the floor) and a naive per-example counter.

Measured side by side in one run, on the same chats and tokenizer, for single-turn chats (alpaca-eval outputs) and
long multi-turn chats (the same turns joined into 20-message conversations):
- floor: the fast tokenizer alone, tokenising the already rendered chats in batched calls;
- naive: one chat at a time (render, tokenise with offsets, mark tokens in Python loops over offsets), as the
  paper's reference script does;
- ours: ``hf_vocabtrim.data.counting.count_tokens`` (template rendering included).

    python benchmarks/count_throughput.py --tokenizer DIR --data alpaca_eval/example/outputs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def count_naive(tokenizer: Any, rows: Iterable[dict[str, Any]]) -> np.ndarray:
    """Reference counter: per chat, per token Python loops (slow, obviously right)."""
    from hf_vocabtrim.data.masking import render_with_spans

    counts = np.zeros(len(tokenizer), dtype=np.int64)
    for row in rows:
        text, spans = render_with_spans(tokenizer, row["messages"])
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        for token, (start, end) in zip(enc["input_ids"], enc["offset_mapping"]):
            if end > start and any(start < e and end > s for s, e in spans):
                counts[token] += 1
    return counts


def load_rows(path: str, limit: int | None) -> list[dict[str, Any]]:
    from hf_vocabtrim.data.chats import ChatColumns, load_chats

    rows = list(load_chats(path, columns=ChatColumns(prompt="instruction", response="output"), max_examples=limit))
    return rows


def multi_turn(rows: list[dict[str, Any]], turns: int = 10) -> list[dict[str, Any]]:
    out = []
    for i in range(0, len(rows) - turns + 1, turns):
        out.append({"messages": [m for r in rows[i : i + turns] for m in r["messages"]]})
    return out


def bench(tokenizer: Any, rows: list[dict[str, Any]], repeats: int, batch_size: int) -> dict[str, Any]:
    from hf_vocabtrim.data.counting import count_tokens
    from hf_vocabtrim.data.masking import render_with_spans

    texts = [render_with_spans(tokenizer, r["messages"])[0] for r in rows]
    times: dict[str, list[float]] = {"floor": [], "naive": [], "ours": []}
    tokens = 0
    for _ in range(repeats):  # interleaved
        t0 = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            tokenizer(texts[i : i + batch_size], add_special_tokens=False)
        times["floor"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        naive = count_naive(tokenizer, rows)
        times["naive"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        ours = count_tokens(tokenizer, rows, batch_size=batch_size, progress=False)
        times["ours"].append(time.perf_counter() - t0)
        assert np.array_equal(ours.counts, naive), "fast and naive counts differ"
        tokens = ours.num_tokens
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "chats": len(rows),
        "assistant_tokens": tokens,
        "seconds": med,
        "assistant_tokens_per_s": {k: tokens / v for k, v in med.items()},
        "ours_vs_floor_time": med["ours"] / med["floor"],
        "ours_vs_naive_speedup": med["naive"] / med["ours"],
    }


def main() -> None:
    from transformers import AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--data", required=True, help="alpaca-eval example/outputs.json")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--copies", type=int, default=5, help="repeat the data (longer, steadier timings)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--out", default="results/count_throughput.json")
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    rows = load_rows(args.data, args.limit) * args.copies
    from hf_vocabtrim.data.counts import vocab_hash

    vocab_hash(tokenizer)  # computed once per tokenizer and cached: not part of the per-data cost
    result = {
        "tokenizer": args.tokenizer,
        "single_turn": bench(tokenizer, rows, args.repeats, args.batch_size),
        "multi_turn_20_messages": bench(tokenizer, multi_turn(rows), args.repeats, args.batch_size),
    }
    for name in ("single_turn", "multi_turn_20_messages"):
        r = result[name]
        tps = r["assistant_tokens_per_s"]
        print(
            f"{name}: {r['chats']} chats, {r['assistant_tokens']} assistant tokens | tokens/s floor "
            f"{tps['floor']:,.0f}, naive {tps['naive']:,.0f}, ours {tps['ours']:,.0f} | ours/floor time "
            f"{r['ours_vs_floor_time']:.2f}x, ours vs naive {r['ours_vs_naive_speedup']:.1f}x faster"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
