# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Count assistant-response tokens of a chat dataset (or every token of a text corpus), fast.

Chats are rendered with the tokenizer's chat template, tokenised in batched fast-tokenizer calls with offsets, masked
with one vectorised ``searchsorted`` per batch and counted with ``numpy.bincount``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Iterable, Iterator, Sized
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .masking import overlap_mask, render_batch_with_spans
from .modeling_trimmed_draft import special_token_ids

COUNTS_FORMAT_VERSION = 1


_HASHES: dict[tuple[int, int], tuple[Any, str]] = {}


def vocab_hash(tokenizer: Any) -> str:
    """A short hash of the tokenizer's token -> id map, so counts are never applied to another tokenizer.

    Cached per tokenizer object and vocabulary size (hashing a 150k vocabulary takes ~0.3 s)."""
    key = (id(tokenizer), len(tokenizer))
    cached = _HASHES.get(key)
    if cached is not None and cached[0] is tokenizer:
        return cached[1]
    value = _vocab_hash(tokenizer)
    _HASHES[key] = (tokenizer, value)
    return value


def _vocab_hash(tokenizer: Any) -> str:
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(f"{len(vocab)}\x00".encode())
    for token in sorted(vocab, key=vocab.__getitem__):
        digest.update(f"{vocab[token]}\x01{token}\x00".encode())
    return digest.hexdigest()[:16]


@dataclass
class TokenCounts:
    """How often each token id occurs in assistant turns (``mode='assistant'``) or in plain text (``'text'``)."""

    counts: np.ndarray
    tokenizer_name: str
    vocab_size: int
    vocab_hash: str
    num_conversations: int
    num_tokens: int
    mode: str = "assistant"
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if self.counts.ndim != 1 or len(self.counts) != self.vocab_size:
            raise ValueError(
                f"counts must be a 1-D array of length vocab_size={self.vocab_size}, got {self.counts.shape}."
            )

    @property
    def metadata(self) -> dict[str, Any]:
        meta = asdict(self)
        meta.pop("counts")
        return {"format_version": COUNTS_FORMAT_VERSION, **meta}

    def check_tokenizer(self, tokenizer: Any) -> None:
        """Raise ``ValueError`` if ``tokenizer`` is not the one these counts were made with."""
        if len(tokenizer) != self.vocab_size or vocab_hash(tokenizer) != self.vocab_hash:
            raise ValueError(
                f"these counts were made with tokenizer {self.tokenizer_name!r} (vocab {self.vocab_size}, hash "
                f"{self.vocab_hash}); the tokenizer given has {len(tokenizer)} tokens, hash {vocab_hash(tokenizer)}. "
                "Count again with the draft's own tokenizer."
            )

    def save(self, path: str | Path) -> Path:
        """Write ``.json`` (sparse, readable) or ``.safetensors`` (dense, with metadata)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".safetensors":
            from safetensors.numpy import save_file

            save_file({"counts": self.counts}, str(path), metadata={"hf_vocabtrim": json.dumps(self.metadata)})
        elif path.suffix == ".json":
            nonzero = np.flatnonzero(self.counts)
            payload = {**self.metadata, "counts": {str(i): int(self.counts[i]) for i in nonzero}}
            path.write_text(json.dumps(payload, indent=1))
        else:
            raise ValueError(f"counts path must end in .json or .safetensors, got {path.name!r}.")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TokenCounts:
        """Read counts written by :meth:`save`."""
        path = Path(path)
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="numpy") as handle:
                meta = json.loads((handle.metadata() or {}).get("hf_vocabtrim", "null") or "null")
                counts = handle.get_tensor("counts")
        else:
            payload = json.loads(path.read_text())
            meta = {k: v for k, v in payload.items() if k != "counts"} if isinstance(payload, dict) else None
            counts = None
            if meta is not None and "vocab_size" in meta and isinstance(payload.get("counts"), dict):
                counts = np.zeros(int(meta["vocab_size"]), dtype=np.int64)
                for key, value in payload["counts"].items():
                    counts[int(key)] = int(value)
        if not meta or counts is None:
            raise ValueError(f"{path} is not a counts file written by `vocabtrim count` (no hf_vocabtrim metadata).")
        meta.pop("format_version", None)
        return cls(counts=counts, **meta)


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

    def render(self, batch: list[dict[str, Any]]) -> tuple[list[str], np.ndarray, int]:
        """Rendered chats, assistant spans in the coordinates of the texts joined by one separator, chats without."""
        if self.mode == "text":
            return [row["text"] for row in batch], np.zeros((0, 2), dtype=np.int64), 0
        texts: list[str] = []
        spans: list[tuple[int, int]] = []
        base = empty = 0
        for text, chat_spans in render_batch_with_spans(self.tokenizer, [row["messages"] for row in batch]):
            empty += not chat_spans
            spans.extend((s + base, e + base) for s, e in chat_spans)
            texts.append(text)
            base += len(text) + 1
        return texts, np.asarray(spans, dtype=np.int64).reshape(-1, 2), empty

    def count(self, texts: list[str], spans: np.ndarray) -> tuple[np.ndarray, int]:
        """Tokenise the batch in one Rust call (with offsets when masking) and count (assistant) tokens."""
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

    def pipelined(self, batches: Iterable[list[dict[str, Any]]]) -> Iterator[tuple[np.ndarray, int, int, int]]:
        """Like ``map(self, batches)``, rendering the next batch's templates (Python) in a thread while the current
        batch is tokenised (Rust, which releases the GIL)."""
        with ThreadPoolExecutor(max_workers=1) as executor:
            iterator = iter(batches)
            first = next(iterator, None)
            pending = executor.submit(self.render, first) if first is not None else None
            batch = first
            while pending is not None and batch is not None:
                texts, spans, empty = pending.result()
                following = next(iterator, None)
                pending = executor.submit(self.render, following) if following is not None else None
                counts, tokens = self.count(texts, spans)
                yield counts, len(batch), empty, tokens
                batch = following

    def __call__(self, batch: list[dict[str, Any]]) -> tuple[np.ndarray, int, int, int]:
        """Return (counts, rows, rows without assistant text, tokens counted)."""
        texts, spans, empty = self.render(batch)
        counts, tokens = self.count(texts, spans)
        return counts, len(batch), empty, tokens


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
    columns = getattr(dataset, "column_names", None)
    if columns is None and isinstance(dataset, list):  # plain rows: look at the first one
        columns = list(dataset[0]) if dataset else []
    columns = columns or []
    mode = "text" if "text" in columns and "messages" not in columns else "assistant"
    if mode == "assistant" and columns and "messages" not in columns:
        raise ValueError(
            f"rows need a `messages` (or `text`) column, got {sorted(columns)}; load them with load_chats."
        )
    vocab_size = len(tokenizer)
    counter = _Counter(tokenizer, vocab_size, mode)
    total = np.zeros(vocab_size, dtype=np.int64)
    num_rows = num_empty = num_tokens = 0
    total_rows = len(dataset) if isinstance(dataset, Sized) else None
    bar = tqdm(total=total_rows, desc=f"counting {mode} tokens", unit="chat", disable=not progress)
    batches = _batches(dataset, batch_size)
    pool = multiprocessing.get_context("spawn").Pool(num_proc) if num_proc > 1 else None
    try:
        results = pool.imap(counter, batches) if pool is not None else counter.pipelined(batches)
        for counts, n, empty, tokens in results:
            total += counts
            num_rows += n
            num_empty += empty
            num_tokens += tokens
            bar.update(n)
            bar.set_postfix(tokens=num_tokens)
    finally:
        bar.close()
        if pool is not None:
            pool.close()
    if num_rows == 0:
        raise ValueError("the dataset is empty: no conversations to count.")
    if num_tokens == 0:
        what = "assistant turns" if mode == "assistant" else "text"
        raise ValueError(f"no tokens counted: none of the {num_rows} conversations has {what}.")
    return TokenCounts(
        counts=total,
        tokenizer_name=str(getattr(tokenizer, "name_or_path", "")),
        vocab_size=vocab_size,
        vocab_hash=vocab_hash(tokenizer),
        num_conversations=num_rows,
        num_tokens=num_tokens,
        mode=mode,
        source=source,
        extra={
            "special_ids": sorted(special_token_ids(None, None, tokenizer)),
            **({"conversations_without_assistant_text": num_empty} if mode == "assistant" else {}),
        },
    )
