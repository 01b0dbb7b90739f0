# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Kept sets to and from the reduced-vocabulary formats of serving engines. Loading never unpickles arbitrary data
(``torch.load(weights_only=True)`` or safetensors).

- ``sglang``: SGLang's ``--speculative-token-map`` file: a ``torch.save``d 1-D int64 tensor of target ids (the "hot"
  ids); draft index i -> ``hot[i]``, LM-head rows ``head[hot]``.
- ``eagle3``: EAGLE-3 / SpecForge / vLLM buffers in safetensors: ``d2t`` (int64, length k, ``target_id = i + d2t[i]``,
  ids ascending) and ``t2d`` (bool, length V, True for kept ids).
- ``frspec``: FR-Spec's ``freq_{k}.pt``: a ``torch.save``d Python list of k target ids, most frequent first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMATS = ("sglang", "eagle3", "frspec")


def _ids(kept_ids: Any) -> torch.Tensor:
    ids = torch.as_tensor(np.asarray(kept_ids), dtype=torch.long).flatten()
    if ids.numel() == 0:
        raise ValueError("the kept set is empty.")
    if torch.unique(ids).numel() != ids.numel():
        raise ValueError("the kept set has duplicated ids.")
    return ids


def eagle3_buffers(kept_ids: Any, vocab_size: int) -> dict[str, torch.Tensor]:
    """``d2t`` offsets and ``t2d`` mask of EAGLE-3 for a kept set (sorted ascending first)."""
    ids = torch.sort(_ids(kept_ids)).values
    if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
        raise ValueError(f"kept ids out of range for V={vocab_size}.")
    t2d = torch.zeros(vocab_size, dtype=torch.bool)
    t2d[ids] = True
    return {"d2t": ids - torch.arange(ids.numel()), "t2d": t2d}


def export_token_map(kept_ids: Any, path: str | Path, fmt: str, vocab_size: int | None = None) -> Path:
    """Write a kept set in ``fmt``. For ``frspec`` pass the ids most frequent first; others are sorted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = _ids(kept_ids)
    if fmt == "sglang":
        torch.save(torch.sort(ids).values, path)
    elif fmt == "frspec":
        torch.save([int(i) for i in ids], path)
    elif fmt == "eagle3":
        if vocab_size is None:
            raise ValueError("eagle3 export needs vocab_size (the length of t2d).")
        from safetensors.torch import save_file

        save_file(eagle3_buffers(ids, vocab_size), str(path), metadata={"format": "pt"})
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}.")
    return path


def import_token_map(path: str | Path, fmt: str, vocab_size: int | None = None) -> np.ndarray:
    """Read a kept set written by an engine (or :func:`export_token_map`); return the ids sorted ascending."""
    path = Path(path)
    if fmt in ("sglang", "frspec"):
        data = torch.load(path, map_location="cpu", weights_only=True)
        ids = torch.as_tensor(data, dtype=torch.long).flatten()
    elif fmt == "eagle3":
        from safetensors.torch import load_file

        buffers = load_file(str(path))
        if "d2t" not in buffers:
            raise ValueError(f"{path} has no `d2t` tensor: not an EAGLE-3 vocabulary map.")
        d2t = buffers["d2t"].long()
        ids = torch.arange(d2t.numel()) + d2t
        if "t2d" in buffers:
            t2d = buffers["t2d"].bool()
            if int(t2d.sum()) != ids.numel() or not bool(t2d[ids].all()):
                raise ValueError(f"{path}: `t2d` does not mark exactly the ids that `d2t` maps to.")
            vocab_size = vocab_size or t2d.numel()
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}.")
    ids = _ids(ids)
    if vocab_size is not None and (int(ids.max()) >= vocab_size or int(ids.min()) < 0):
        raise ValueError(f"{path}: ids out of range for V={vocab_size}.")
    return np.sort(ids.numpy())
