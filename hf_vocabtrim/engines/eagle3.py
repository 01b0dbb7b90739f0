# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""EAGLE-3 and DFlash draft heads with a reduced vocabulary, as vLLM, SGLang and SpecForge load them: read a
checkpoint folder, lint it, choose a smaller kept set among the ids its head was trained on, write the trimmed head.

Layouts (facts from the engines' public sources):

- ``eagle`` (SafeAILab EAGLE, SpecForge, SGLang): ``config.json`` with ``draft_vocab_size`` and ``vocab_size`` (the
  target's V); weights ``fc``, ``midlayer.*``, ``norm``, ``lm_head.weight`` [draft_vocab_size, hidden], ``d2t``
  (int64 [draft_vocab_size]: target id = i + d2t[i], ids ascending) and ``t2d`` (bool [V], True for those ids), in
  ``model.safetensors`` (sharded or not) or ``pytorch_model.bin``.
- ``speculators`` (vLLM's format): ``speculators_model_type: "eagle3"``, ``draft_vocab_size`` and a nested
  ``transformer_layer_config`` (its ``vocab_size`` is the target's V, ``hidden_size`` the head's); ``layers.0.*``
  instead of ``midlayer.*``; ``d2t`` / ``t2d`` as above (present only when the draft vocabulary is reduced).
- ``dflash`` (vLLM's DFlash heads): the same ``d2t`` / ``t2d`` / ``draft_vocab_size``, with a ``dflash_config``.

vLLM scatters the head's logits into a ``-inf`` row of width V at ``arange(k) + d2t`` and skips ``t2d``; SGLang takes
``arange(k) + d2t`` as its hot ids. A missing ``d2t`` is silently an identity map in vLLM (acceptance collapses, no
error): hence :func:`check_head`. This module is long because it holds the layouts, the lint and the trimming.
"""

from __future__ import annotations

import json
import shutil
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.counts import TokenCounts
from ..data.specials import id_list
from ..selection.coverage import coverage_curve, rank_ids
from ..selection.flops import eagle3_decode_flops, latency_reduction
from ..selection.keep_plan import KeepPlan
from ..selection.optimize import Curves
from ..selection.planning import Plan, Utility, choose
from .export import eagle3_buffers

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
LAYOUTS = ("eagle", "speculators", "dflash")


@dataclass
class DraftHead:
    """An EAGLE-3 / DFlash checkpoint in memory: its layout, ``config.json`` and every tensor, by name."""

    layout: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    files: list[str] = field(default_factory=list)  # the folder's other files (tokenizer, card...), copied on save

    @property
    def _text(self) -> dict[str, Any]:
        return self.config.get("transformer_layer_config") or self.config

    @property
    def vocab_size(self) -> int:
        """V, the target's vocabulary (the length of ``t2d``)."""
        value = self._text.get("vocab_size") or self.config.get("vocab_size")
        if value is None:
            raise ValueError("the checkpoint's config has no `vocab_size` (the target's vocabulary).")
        return int(value)

    @property
    def draft_vocab_size(self) -> int:
        """The number of head rows the config declares (V when it declares none: no reduced vocabulary)."""
        return int(self.config.get("draft_vocab_size") or self.vocab_size)

    @property
    def hidden_size(self) -> int:
        return int(self._text["hidden_size"])

    @property
    def head_ids(self) -> np.ndarray:
        """Target id of each head row: ``arange(k) + d2t`` (the identity when there is no ``d2t``)."""
        d2t = self.tensors.get("d2t")
        rows = self.tensors["lm_head.weight"].shape[0]
        if d2t is None:
            return np.arange(rows)
        return np.arange(d2t.numel()) + d2t.long().numpy()

    @property
    def eos_ids(self) -> list[int]:
        """The config's ``eos_token_id`` (an int or a list) as a list; empty when it has none."""
        return id_list(self.config.get("eos_token_id", self._text.get("eos_token_id")))

    def flops(self, k: int | None = None) -> Any:
        """FLOPs per draft token of this head with k LM-head rows (default: its own)."""
        config = types.SimpleNamespace(**{**self._text, "vocab_size": self.draft_vocab_size})
        return eagle3_decode_flops(config, k=k, context_length=1024)


def _layout(config: dict[str, Any]) -> str:
    if config.get("speculators_model_type") == "eagle3" or "transformer_layer_config" in config:
        return "speculators"
    if "dflash_config" in config:
        return "dflash"
    return "eagle"


def load_head(folder: str | Path) -> DraftHead:
    """Read an EAGLE-3 / DFlash checkpoint folder (safetensors, sharded or not, or ``pytorch_model.bin``)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder}: no config.json; pass an EAGLE-3 / DFlash checkpoint folder.")
    config = json.loads((folder / "config.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        tensors = load_file(str(folder / "model.safetensors"))
    elif (folder / "model.safetensors.index.json").is_file():
        from safetensors.torch import load_file

        index = json.loads((folder / "model.safetensors.index.json").read_text())
        for shard in sorted(set(index["weight_map"].values())):
            tensors.update(load_file(str(folder / shard)))
    elif (folder / "pytorch_model.bin").is_file():
        tensors = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise ValueError(f"{folder}: no weights ({' / '.join(WEIGHT_FILES)}).")
    if "lm_head.weight" not in tensors:
        raise ValueError(f"{folder}: no `lm_head.weight`: not an EAGLE-3 / DFlash head with its own LM head.")
    weights = {"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "config.json"}
    shards = {p.name for p in folder.glob("model-*.safetensors")}
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name not in weights | shards)
    return DraftHead(_layout(config), config, tensors, files)


def check_head(head: DraftHead) -> list[str]:
    """Problems of a reduced-vocabulary head, one line each (empty: it lints clean): what makes an engine map draft
    rows to the wrong ids or refuse the checkpoint. Missing end-of-reply rows are warnings (:func:`head_warnings`)."""
    problems: list[str] = []
    weight = head.tensors["lm_head.weight"]
    vocab, declared = head.vocab_size, head.draft_vocab_size
    rows, width = weight.shape
    if width != head.hidden_size:
        problems.append(f"lm_head.weight is {rows} x {width} but the hidden size is {head.hidden_size}.")
    if rows != declared:
        problems.append(f"lm_head.weight has {rows} rows but draft_vocab_size is {declared}: one row per d2t entry.")
    d2t, t2d = head.tensors.get("d2t"), head.tensors.get("t2d")
    if d2t is None:
        if rows < vocab:
            problems.append(
                f"d2t is missing but the head has {rows} < V={vocab} rows: vLLM maps draft row i to target id i (an "
                "identity map: acceptance collapses silently); write d2t[i] = target_id[i] - i."
            )
        return problems
    if d2t.dtype != torch.int64:
        problems.append(f"d2t is {d2t.dtype}; the engines read int64 offsets.")
    if d2t.ndim != 1 or d2t.numel() != declared:
        problems.append(f"d2t has {d2t.numel()} entries but draft_vocab_size is {declared} (and {rows} head rows).")
    offsets = d2t.long().reshape(-1).numpy()
    ids = np.arange(offsets.size) + offsets
    mask = None if t2d is None else t2d.bool().reshape(-1)
    # the common mistake: d2t holding the target ids themselves (strictly increasing, inside V) instead of offsets
    looks_absolute = offsets.size > 1 and bool(np.all(np.diff(offsets) > 0)) and offsets[0] >= 0 and offsets[-1] < vocab
    marks_offsets = mask is not None and mask.numel() == vocab and int(mask.sum()) == offsets.size
    marks_offsets = marks_offsets and looks_absolute and bool(mask[torch.as_tensor(offsets)].all())  # type: ignore[index]
    mapping_reported = True
    if ids.size and (ids.min() < 0 or ids.max() >= vocab):
        hint = (
            "; d2t looks like absolute target ids: store offsets, d2t[i] = target_id[i] - i" if looks_absolute else ""
        )
        problems.append(f"d2t maps rows to target ids {ids.min()}..{ids.max()}, outside [0, V={vocab}){hint}.")
    elif ids.size > 1 and not np.all(np.diff(ids) > 0):
        first = int(np.argmax(np.diff(ids) <= 0))
        problems.append(
            f"the target ids i + d2t[i] are not strictly increasing (row {first + 1} maps to {ids[first + 1]} after "
            f"{ids[first]}): sort the rows and d2t by target id."
        )
    elif marks_offsets:
        problems.append("d2t holds absolute target ids (t2d marks d2t's values): store offsets, d2t[i] = id[i] - i.")
    else:
        mapping_reported = False
    if mask is not None:
        if t2d.dtype != torch.bool:  # type: ignore[union-attr]
            problems.append(f"t2d is {t2d.dtype}; the engines read a bool mask.")  # type: ignore[union-attr]
        if mask.numel() != vocab:
            problems.append(f"t2d has {mask.numel()} entries but V={vocab}.")
        elif not mapping_reported and (int(mask.sum()) != ids.size or not bool(mask[torch.as_tensor(ids)].all())):
            problems.append(f"t2d marks {int(mask.sum())} ids, not exactly the {ids.size} that d2t maps to.")
    dtypes = {str(t.dtype) for name, t in head.tensors.items() if t.is_floating_point()}
    if len(dtypes) > 1:
        problems.append(f"the floating-point weights mix dtypes {sorted(dtypes)}.")
    return problems


def missing_end_ids(head: DraftHead, end_ids: list[int] | None = None) -> list[int]:
    """End-of-reply ids (``end_ids``, default: the config's eos) that the head has no row for."""
    wanted = set(head.eos_ids if end_ids is None else end_ids) | set(head.eos_ids)
    present = set(head.head_ids.tolist())
    return sorted(i for i in wanted if i not in present)


def head_warnings(head: DraftHead, end_ids: list[int] | None = None) -> list[str]:
    """What an engine serves but a user should know: end-of-reply ids (eos, end of turn) the head has no row for
    (the draft never proposes a reply's end; the target still ends it, losslessly). Trimming cannot add a row."""
    missing = missing_end_ids(head, end_ids)
    if not missing:
        return []
    return [
        f"warning: the head has no row for end-of-reply ids {missing} (eos / end of turn): the draft never proposes "
        "the end of a reply; the target still ends it (lossless), one token a round later."
    ]


def lost_end_ids(original: DraftHead, trimmed: DraftHead, end_ids: list[int] | None = None) -> list[int]:
    """End-of-reply ids the original head had a row for and ``trimmed`` has not (an error of the trimming)."""
    wanted = set(original.eos_ids if end_ids is None else end_ids) | set(original.eos_ids)
    before, after = set(original.head_ids.tolist()), set(trimmed.head_ids.tolist())
    return sorted(i for i in wanted if i in before and i not in after)


def head_keep_plan(
    head: DraftHead, counts: TokenCounts, end_ids: list[int] | None = None
) -> tuple[KeepPlan, list[int]]:
    """The keep order over the target's V: the special ids the head has rows for (end-of-reply ids, and the counts'
    special ids), then the head's ids by count, then every id the head has no row for (never kept). Also the
    end-of-reply ids the head lacks (``end_ids``, default: the config's eos)."""
    vocab = head.vocab_size
    if counts.vocab_size > vocab:
        raise ValueError(
            f"tokenizer/vocabulary mismatch: the counts cover {counts.vocab_size} ids but the head's target has "
            f"V={vocab}; count with the target's tokenizer."
        )
    allowed = np.zeros(vocab, dtype=bool)
    allowed[head.head_ids] = True
    specials = set(counts.extra.get("special_ids", [])) | set(end_ids or []) | set(head.eos_ids)
    forced = sorted(int(i) for i in specials if 0 <= int(i) < vocab and allowed[int(i)])
    order = rank_ids(counts.counts, forced, vocab_size=vocab, allowed=allowed)
    info = {"counts": counts.metadata, "head_rows": int(allowed.sum())}
    plan = KeepPlan(order=order, num_forced=len(forced), vocab_hash=counts.vocab_hash, info=info)
    return plan, missing_end_ids(head, end_ids)


def plan_head(
    head: DraftHead,
    counts: TokenCounts,
    *,
    k: int | None = None,
    min_coverage: float = 0.9,
    alpha: float = 0.5,
    n_trials: int = 50,
    k_min: int | None = None,
    seed: int = 0,
    end_ids: list[int] | None = None,
    progress: bool = True,
) -> tuple[Plan, list[int]]:
    """Choose k among the head's rows: the paper's U(k) = alpha * C(k) + (1 - alpha) * R(k) under C(k) >= min_coverage
    with TPE (C: share of the counted assistant tokens kept; R: the EAGLE-3 head's FLOPs saved). ``k`` fixes it."""
    keep, missing = head_keep_plan(head, counts, end_ids)
    assert keep.info is not None  # head_keep_plan records the head's rows there
    rows = int(keep.info["head_rows"])
    vocab = keep.vocab_size
    coverage = coverage_curve(counts.counts, keep.order)
    reduction = latency_reduction(head.flops(), np.arange(vocab + 1), rows)  # k > rows: negative, never feasible
    curves = Curves(coverage=coverage, latency_reduction=reduction)
    if k is None and coverage[rows] < min_coverage:
        raise ValueError(
            f"min_coverage={min_coverage} is infeasible: the head's {rows} rows cover at most {coverage[rows]:.4f} of "
            "the counted assistant tokens. Lower --min-coverage."
        )
    if k is not None and not 1 <= k <= rows:
        raise ValueError(f"k={k} is out of range: the head has {rows} rows (k must be in [1, {rows}]).")
    lowest = max(keep.num_forced, 1, min(256, rows)) if k_min is None else k_min
    plan = choose(
        keep,
        curves,
        objective=Utility(alpha),
        min_coverage=0.0 if k is not None else min_coverage,
        k_min=lowest if k is None else k,
        k_max=rows if k is None else k,
        n_trials=n_trials,
        seed=seed,
        alpha=alpha,
        progress=progress,
        latency_model="flops (EAGLE-3 head)",
        flops_model=head.flops,
    )
    return plan, missing


def trim_head(head: DraftHead, kept_ids: np.ndarray) -> DraftHead:
    """The head keeping the rows of ``kept_ids`` (target ids the head has rows for), in target-id order, with a new
    ``d2t`` (and ``t2d`` where the layout has it) and ``draft_vocab_size``; every other tensor and field unchanged."""
    kept = np.unique(np.asarray(kept_ids, dtype=np.int64))
    ids = head.head_ids
    position = {int(i): row for row, i in enumerate(ids.tolist())}
    missing = [int(i) for i in kept if int(i) not in position]
    if missing:
        raise ValueError(f"{len(missing)} kept ids have no row in the head (e.g. {missing[:5]}): they cannot be kept.")
    rows = torch.as_tensor([position[int(i)] for i in kept], dtype=torch.long)
    tensors = dict(head.tensors)
    tensors["lm_head.weight"] = head.tensors["lm_head.weight"].index_select(0, rows).contiguous()
    if "lm_head.bias" in tensors:
        tensors["lm_head.bias"] = head.tensors["lm_head.bias"].index_select(0, rows).contiguous()
    buffers = eagle3_buffers(kept, head.vocab_size)  # the export's d2t offsets and t2d mask
    tensors["d2t"] = buffers["d2t"]
    if "t2d" in head.tensors:  # where the layout has it
        tensors["t2d"] = buffers["t2d"]
    config = json.loads(json.dumps(head.config))
    config["draft_vocab_size"] = int(kept.size)
    return DraftHead(head.layout, config, tensors, list(head.files))


def save_head(head: DraftHead, out: str | Path, source: str | Path | None = None, card: str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and the source folder's other files, and a README card)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in head.files:
        if source is not None and name != "README.md":
            shutil.copy2(Path(source) / name, out / name)
    (out / "config.json").write_text(json.dumps(head.config, indent=2) + "\n")
    tensors = {name: tensor.contiguous() for name, tensor in head.tensors.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    if card is not None:
        (out / "README.md").write_text(card)
    return out


def head_card(head: DraftHead, original_rows: int, summary: dict[str, Any], missing: list[int]) -> str:
    """A model card saying what was trimmed, with what data and coverage."""
    counts = summary.get("counts") or {}
    k = head.draft_vocab_size
    t2d = " and `t2d`" if "t2d" in head.tensors else ""
    lines = [
        "---",
        "tags:",
        "- speculative-decoding",
        "- eagle3",
        "- vocabulary-trimming",
        "---",
        "",
        f"# EAGLE-3 draft head trimmed to {k:,} of its {original_rows:,} vocabulary rows",
        "",
        f"Made with [hf-vocabtrim](https://github.com/hf-vocabtrim/hf-vocabtrim) (`vocabtrim eagle3`, layout "
        f"`{head.layout}`). The LM head keeps the {k:,} rows of the ids most used in the assistant replies of "
        f"**{counts.get('source') or 'the calibration data'}** ({counts.get('num_conversations', 'n/a')} "
        f"conversations, {counts.get('num_tokens', 'n/a')} tokens, tokenizer {counts.get('tokenizer_name') or 'n/a'})"
        f", in target-id order, with new `d2t` offsets (target id = i + d2t[i]){t2d} and `draft_vocab_size` = {k}. "
        "Every other tensor and config field is the original's.",
        "",
        f"- coverage of the calibration assistant tokens: {summary.get('coverage', float('nan')):.4f} "
        f"(the untrimmed head's rows: {summary.get('head_coverage', float('nan')):.4f})",
        f"- head FLOPs saved per draft token: {summary.get('latency_reduction', float('nan')):.1%} "
        f"(the LM head is {summary.get('lm_head_share_full', float('nan')):.0%} of the head's FLOPs before trimming)",
        f"- chosen by: {summary.get('objective', 'utility')} (alpha {summary.get('alpha')}, coverage floor "
        f"{summary.get('min_coverage')}), k in [{summary.get('k_min')}, {summary.get('k_max')}]",
    ]
    if missing:
        lines.append(
            f"- warning: end-of-reply ids the original head had no row for (still not proposable; the target ends "
            f"replies itself, losslessly): {missing}"
        )
    lines += [
        "",
        'Serve it as the original (vLLM `speculative_config={"method": "eagle3", ...}`, SGLang '
        "`--speculative-algorithm EAGLE3`); outputs stay lossless, only acceptance can change.",
        "",
    ]
    return "\n".join(lines)
