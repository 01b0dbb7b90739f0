# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Count assistant-response tokens of a chat dataset (or every token of a text corpus), fast.

Chats are rendered with the tokenizer's chat template, tokenised in batched fast-tokenizer calls with offsets, masked
with one vectorised ``searchsorted`` per batch and counted with ``numpy.bincount``.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .chats import public_name
from .counts import TokenCounts, vocab_hash
from .masking import overlap_mask, render_batch_with_spans
from .specials import special_token_ids


def _batches(rows: Iterable[dict[str, Any]], batch_size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Counter:
    """Counts one batch at a time; picklable so worker processes can run it."""

    def __init__(self, tokenizer: Any, vocab_size: int, mode: str) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.mode = mode

    def render(self, batch: list[dict[str, Any]]) -> tuple[list[str], np.ndarray, int, int, int]:
        """Rendered chats, assistant spans in the coordinates of the texts joined by one separator, chats without
        assistant text, chats skipped because their assistant text cannot be located, and chats with assistant
        turns (empty or not)."""
        if self.mode == "text":
            return [row["text"] for row in batch], np.zeros((0, 2), dtype=np.int64), 0, 0, 0
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        base = empty = skipped = 0
        with_turns = sum(any(m.get("role") == "assistant" for m in row["messages"] or []) for row in batch)
        for result in render_batch_with_spans(self.tokenizer, [row["messages"] for row in batch]):
            if result is None:
                skipped += 1
                continue
            text, chat_spans = result
            empty += not chat_spans
            spans.extend((s + base, e + base) for s, e in chat_spans)
            texts.append(text)
            base += len(text) + 1
        return texts, np.asarray(spans, dtype=np.int64).reshape(-1, 2), empty, skipped, with_turns

    def count(self, texts: list[str], spans: np.ndarray) -> tuple[np.ndarray, int]:
        """Tokenise the batch in one Rust call (with offsets when masking) and count (assistant) tokens."""
        if not texts:
            return np.zeros(self.vocab_size, dtype=np.int64), 0
        encodings = self.tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
        ids_lists = [enc.ids for enc in encodings]
        lengths = np.fromiter(map(len, ids_lists), dtype=np.int64, count=len(ids_lists))
        n = int(lengths.sum())
        ids = np.fromiter(chain.from_iterable(ids_lists), dtype=np.int64, count=n)
        if self.mode == "assistant":
            offsets = np.fromiter(
                chain.from_iterable(chain.from_iterable(enc.offsets for enc in encodings)), dtype=np.int64, count=2 * n
            ).reshape(-1, 2)
            starts = np.cumsum([0, *(len(t) + 1 for t in texts[:-1])])
            offsets += np.repeat(starts, lengths)[:, None]
            ids = ids[overlap_mask(offsets, spans)]
        return np.bincount(ids, minlength=self.vocab_size), len(ids)

    def pipelined(
        self, batches: Iterable[list[dict[str, Any]]]
    ) -> Iterator[tuple[np.ndarray, int, int, int, int, int]]:
        """Like ``map(self, batches)``, rendering the next batch's templates (Python) in a thread while the current
        batch is tokenised (Rust, which releases the GIL)."""
        with ThreadPoolExecutor(max_workers=1) as executor:
            iterator = iter(batches)
            first = next(iterator, None)
            pending = executor.submit(self.render, first) if first is not None else None
            batch = first
            while pending is not None and batch is not None:
                texts, spans, empty, skipped, with_turns = pending.result()
                following = next(iterator, None)
                pending = executor.submit(self.render, following) if following is not None else None
                counts, tokens = self.count(texts, spans)
                yield counts, len(batch), empty, skipped, tokens, with_turns
                batch = following

    def __call__(self, batch: list[dict[str, Any]]) -> tuple[np.ndarray, int, int, int, int, int]:
        """Return (counts, rows, rows without assistant text, rows skipped, tokens counted, rows with assistant
        turns)."""
        texts, spans, empty, skipped, with_turns = self.render(batch)
        counts, tokens = self.count(texts, spans)
        return counts, len(batch), empty, skipped, tokens, with_turns


def _with_columns(dataset: Iterable[dict[str, Any]]) -> tuple[Iterable[dict[str, Any]], list[str]]:
    """The dataset (re-chained if its first row had to be read) and its column names."""
    columns = getattr(dataset, "column_names", None)
    if columns is not None:
        return dataset, list(columns)
    if isinstance(dataset, list):  # plain rows: look at the first one
        return dataset, list(dataset[0]) if dataset else []
    iterator = iter(dataset)  # e.g. a streaming dataset that knows its columns only after the first row
    first = next(iterator, None)
    if first is None:
        return [], []
    return chain([first], iterator), list(first)


def count_tokens(
    tokenizer: Any,
    dataset: Iterable[dict[str, Any]],
    *,
    batch_size: int = 256,
    num_proc: int = 1,
    progress: bool = True,
    source: str = "",
) -> TokenCounts:
    """Count assistant tokens of a ``messages`` dataset, or all tokens of a ``text`` dataset (see ``load_chats``).

    Raises ``ValueError`` for an empty dataset or one with no assistant text.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("count_tokens needs a fast (Rust) tokenizer for offsets: load it with use_fast=True.")
    dataset, columns = _with_columns(dataset)
    mode = "text" if "text" in columns and "messages" not in columns else "assistant"
    if mode == "assistant" and columns and "messages" not in columns:
        raise ValueError(
            f"rows need a `messages` (or `text`) column, got {sorted(columns)}; load them with load_chats."
        )
    vocab_size = len(tokenizer)
    counter = _Counter(tokenizer, vocab_size, mode)
    total = np.zeros(vocab_size, dtype=np.int64)
    num_rows = num_empty = num_skipped = num_tokens = num_with_turns = 0
    total_rows = len(dataset) if isinstance(dataset, Sized) else None
    bar = tqdm(total=total_rows, desc=f"counting {mode} tokens", unit="chat", disable=not progress)
    batches = _batches(dataset, batch_size)
    pool = multiprocessing.get_context("spawn").Pool(num_proc) if num_proc > 1 else None
    try:
        results = pool.imap(counter, batches) if pool is not None else counter.pipelined(batches)
        for counts, n, empty, skipped, tokens, with_turns in results:
            total += counts
            num_rows += n
            num_empty += empty
            num_skipped += skipped
            num_tokens += tokens
            num_with_turns += with_turns
            bar.update(n)
            bar.set_postfix(tokens=num_tokens, skipped=num_skipped)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
    _check_counted(num_rows, num_skipped, num_tokens, num_with_turns, mode, source)
    return TokenCounts(
        counts=total,
        tokenizer_name=public_name(str(getattr(tokenizer, "name_or_path", ""))),  # a Hub id or a folder's name
        vocab_size=vocab_size,
        vocab_hash=vocab_hash(tokenizer),
        num_conversations=num_rows,
        num_tokens=num_tokens,
        mode=mode,
        source=source,
        extra={
            "special_ids": sorted(special_token_ids(None, None, tokenizer)),
            **(
                {"conversations_without_assistant_text": num_empty, "skipped_conversations": num_skipped}
                if mode == "assistant"
                else {}
            ),
        },
    )


def _check_counted(rows: int, skipped: int, tokens: int, with_turns: int, mode: str, source: str) -> None:
    """One ``ValueError`` line where nothing was counted (empty data, no assistant turns, only empty ones); a note on
    stderr for the conversations skipped."""
    if rows == 0:
        raise ValueError("the dataset is empty: no conversations to count.")
    if skipped:
        print(
            f"count_tokens: skipped {skipped} of {rows} conversations whose assistant text the chat template "
            "does not render in a form that can be located (recorded as `skipped_conversations`).",
            file=sys.stderr,
        )
    if tokens == 0:
        where = f" in {source}" if source else ""
        if mode == "assistant" and with_turns and not skipped:
            raise ValueError(
                f"no tokens counted{where}: {with_turns} of the {rows} conversations have assistant turns, "
                "but every assistant turn is empty."
            )
        what = "assistant turns" if mode == "assistant" else "text"
        raise ValueError(
            f"no tokens counted{where}: none of the {rows} conversations has {what}"
            + (f" that can be located ({skipped} skipped)." if skipped else ".")
        )
