# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Pre-flight check of a saved ``TrimmedDraftModel`` folder from its ``config.json`` and safetensors headers, before
any weight loads: what ``vocabtrim check`` prints and what the vLLM plugin raises before vLLM builds the draft.

Only ``kept_ids`` (k integers) is read from the weights; every other tensor is judged by its header (shape, dtype).
Imports neither torch nor transformers (``vocabtrim check --help`` and vLLM's start-up stay light).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

RETRIM = "re-create it with `vocabtrim trim`"
_INT_DTYPES = {"I64": "<q", "I32": "<i", "I16": "<h", "U8": "<B", "I8": "<b"}


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file: tensor name -> ``{"dtype", "shape", "data_offsets"}``."""
    with path.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(size))
    header.pop("__metadata__", None)
    return header


def weight_headers(folder: Path) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Every tensor of a folder's safetensors weights (single file or sharded): name -> (file, header entry)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({folder / name for name in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = [folder / "model.safetensors"] if (folder / "model.safetensors").is_file() else []
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for file in files:
        for name, entry in safetensors_header(file).items():
            out[name] = (file, entry)
    return out


def read_int_tensor(file: Path, entry: dict[str, Any]) -> list[int]:
    """The values of a 1-D integer tensor of a safetensors file (its bytes read directly)."""
    begin, end = entry["data_offsets"]
    fmt = _INT_DTYPES[entry["dtype"]]
    width = struct.calcsize(fmt)
    with file.open("rb") as handle:
        (size,) = struct.unpack("<Q", handle.read(8))
        handle.seek(8 + size + begin)
        data = handle.read(end - begin)
    return [value for (value,) in struct.iter_unpack(fmt, data[: len(data) // width * width])]


def _embedding_name(names: list[str]) -> str | None:
    """The base draft's input embedding among the folder's tensors (``draft.model.embed_tokens.weight`` and kin)."""
    found = [n for n in names if n.startswith("draft.") and "lm_head" not in n and n.endswith(("embed_tokens.weight",
             "wte.weight", "word_embeddings.weight", "embed_in.weight", "tok_embeddings.weight"))]  # fmt: skip
    return found[0] if found else None


def trimmed_folder_problems(
    folder: str | Path,
    target_vocab_size: int | None = None,
    headers: dict[str, tuple[Path, dict[str, Any]]] | None = None,
) -> list[str]:
    """Problems of a ``TrimmedDraftModel`` folder, one line each naming the field and the fix (empty: it is sound).

    Checked: ``config.json`` (model_type, ``text_config.vocab_size`` V, ``draft_vocab_size`` k, context settings);
    ``kept_ids`` (present, k ids, sorted, unique, in [0, V)); head rows = k; embedding rows = V; context rows
    (``context_head_weight`` with V rows for ``stored_head``); and, with ``target_vocab_size``, V = the target's.
    ``headers``: the folder's :func:`weight_headers`, where the caller has read them already."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        return [f"config.json: missing; pass a folder written by `vocabtrim trim` ({folder})."]
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as err:
        return [f"config.json: not valid JSON ({err}); {RETRIM}."]
    if config.get("model_type") != "trimmed_draft":
        return [
            f"config.json: model_type is {config.get('model_type')!r}, not 'trimmed_draft': not a trimmed draft "
            "(trim it with `vocabtrim trim`; EAGLE-3 / DFlash heads are checked as such)."
        ]
    vocab, k = (config.get("text_config") or {}).get("vocab_size"), config.get("draft_vocab_size")
    if not isinstance(vocab, int) or vocab < 1:
        return [f"config.json: text_config.vocab_size is {vocab!r}, expected the target's V; {RETRIM}."]
    if not isinstance(k, int) or k < 1 or k > vocab:
        return [f"config.json: draft_vocab_size is {k!r}, expected k in [1, V={vocab}]; {RETRIM}."]
    headers = weight_headers(folder) if headers is None else headers
    if not headers:
        return [f"model.safetensors: missing (no safetensors weights in {folder}); save with safetensors or {RETRIM}."]
    problems = []
    if target_vocab_size is not None and target_vocab_size != vocab:
        problems.append(
            f"text_config.vocab_size: the draft's V={vocab:,} differs from the target's V={target_vocab_size:,} "
            "(e.g. a padded vocabulary: Qwen2.5-7B+ has 152,064, Qwen2.5-0.5B 151,936); re-trim with "
            "`vocabtrim trim --target TARGET` so the draft takes the target's V."
        )
    return problems + _kept_ids_problems(headers, k, vocab) + _row_problems(headers, config, k, vocab)


def _kept_ids_problems(headers: dict[str, tuple[Path, dict[str, Any]]], k: int, vocab: int) -> list[str]:
    kept = headers.get("kept_ids")
    if kept is None:
        return [f"kept_ids: missing from the weights: not a trimmed draft; {RETRIM}."]
    file, entry = kept
    shape, dtype = entry["shape"], entry["dtype"]
    if len(shape) != 1 or dtype not in _INT_DTYPES:
        return [f"kept_ids: shape {shape} dtype {dtype}, expected {k} int64 ids; {RETRIM}."]
    if shape[0] != k:
        return [f"kept_ids: {shape[0]} ids but draft_vocab_size is {k}: corrupt id map; {RETRIM}."]
    ids = read_int_tensor(file, entry)
    problems = []
    if any(b <= a for a, b in zip(ids, ids[1:])):
        problems.append(f"kept_ids: not sorted ascending without duplicates: corrupt id map; {RETRIM}.")
    if ids and (min(ids) < 0 or max(ids) >= vocab):
        problems.append(f"kept_ids: ids out of range [{min(ids)}, {max(ids)}] for V={vocab}: corrupt id map; {RETRIM}.")
    return problems


def _row_problems(
    headers: dict[str, tuple[Path, dict[str, Any]]], config: dict[str, Any], k: int, vocab: int
) -> list[str]:
    """Head rows = k, input-embedding rows = V, context rows where context tokens are on."""
    problems = []
    head = headers.get("draft.lm_head.weight")
    if head is None:
        problems.append(f"draft.lm_head.weight: missing: not a trimmed draft; {RETRIM}.")
    elif head[1]["shape"][0] != k:
        rows = head[1]["shape"][0]
        problems.append(
            f"draft.lm_head.weight: {rows} rows but draft_vocab_size is {k} (one row per kept id); {RETRIM}."
        )
    embedding = _embedding_name(list(headers))
    if embedding is None:
        problems.append(f"draft input embedding: not found among the weights; {RETRIM}.")
    elif headers[embedding][1]["shape"][0] != vocab:
        rows = headers[embedding][1]["shape"][0]
        problems.append(f"{embedding}: {rows} rows but text_config.vocab_size is V={vocab} (the input embedding keeps "
                        f"all V rows); {RETRIM}.")  # fmt: skip
    if not config.get("context_tokens"):
        return problems
    rows_from = config.get("context_rows")
    if rows_from == "stored_head":
        stored = headers.get("context_head_weight")
        if stored is None or stored[1]["shape"][0] != vocab:
            found = "missing" if stored is None else f"{stored[1]['shape'][0]} rows"
            problems.append(f"context_head_weight: {found}, expected V={vocab} rows (context_tokens on with "
                            f"context_rows 'stored_head'); {RETRIM} or set context_tokens false in config.json."
                            )  # fmt: skip
    elif rows_from != "input_embeddings":
        problems.append(f"config.json: context_rows is {rows_from!r} with context_tokens on, expected "
                        "'input_embeddings' or 'stored_head'; set context_tokens false or re-create it with "
                        "`vocabtrim trim`.")  # fmt: skip
    return problems
