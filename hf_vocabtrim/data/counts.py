# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Token counts of a dataset (``TokenCounts``): saved as JSON or safetensors with the tokenizer's vocabulary hash, so
counts are never applied to another tokenizer."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
            try:
                payload = json.loads(path.read_text())
            except json.JSONDecodeError:  # e.g. a JSONL data file passed where counts are expected
                payload = None
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
