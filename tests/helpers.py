"""Helpers shared by the test modules."""

from __future__ import annotations

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.model import fast_path
from hf_vocabtrim.model.fast_path import StaticDrafter

PATHS = ["eager", "static", "captured-twin"]


def use_path(trimmed: TrimmedDraftModel, path: str) -> TrimmedDraftModel:
    """Route ``trimmed``'s assistant calls through ``path``: transformers' eager loop, the static-cache path, or the
    static path with the CPU twin of CUDA-graph capture (same warm-up, rewind and static buffers)."""
    trimmed.config.fast_path = "eager" if path == "eager" else "static"
    if path == "captured-twin":
        fast_path.attach(trimmed, StaticDrafter(trimmed, capture="twin"))
    return trimmed
