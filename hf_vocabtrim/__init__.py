# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""hf-vocabtrim: vocabulary-trimmed draft models for Hugging Face speculative decoding.

The package reads as its pipeline: ``data`` (chats -> assistant-token counts), ``selection`` (counts -> a keep plan:
the ordered ids and the chosen k), ``model`` (a keep plan applied to a draft: ``TrimmedDraftModel``), ``engines``
(EAGLE-3 heads and token maps for vLLM / SGLang, the vLLM plugin); ``measure`` times things on your hardware and
``commands`` is the ``vocabtrim`` command line.

``import hf_vocabtrim`` imports neither torch nor transformers (the command line answers ``--help`` at once): the
public names load on first use, and the ``trimmed_draft`` config and model are registered with transformers'
``AutoConfig`` / ``AutoModelForCausalLM`` as soon as transformers is imported (at once if it already is).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

__version__ = "0.5.0"

# public names, imported on first use
_LAZY = {
    "DEFAULT_ASSISTANT_SETTINGS": ".model.modeling_trimmed_draft",
    "ScatterToFullVocabLogitsProcessor": ".model.modeling_trimmed_draft",
    "TrimmedDraftModel": ".model.modeling_trimmed_draft",
    "validate_kept_ids": ".model.modeling_trimmed_draft",
    "TrimmedDraftConfig": ".model.configuration_trimmed_draft",
    "KeepPlan": ".selection.keep_plan",
    "TokenCounts": ".data.counts",
    "count_tokens": ".data.counting",
    "trim_draft": ".model.trimming",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'hf_vocabtrim' has no attribute {name!r}")


def register_auto_classes() -> None:
    """Register the trimmed draft with transformers' Auto classes (``save_pretrained`` then writes ``auto_map`` and
    copies the code files, for ``trust_remote_code`` users): each of the two modules registers its class as the last
    step of its import, so a module still being imported (the one whose import loaded transformers) registers when
    it completes (and then nothing is imported here: the other one imports it)."""
    names = [f"{__name__}.model.{module}" for module in ("configuration_trimmed_draft", "modeling_trimmed_draft")]
    if not any(name in sys.modules for name in names):
        for name in names:
            importlib.import_module(name)


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Runs :func:`register_auto_classes` right after ``import transformers`` completes (once, then removes itself)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "transformers":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            register_auto_classes()

        loader.exec_module = exec_module
        return spec


if "transformers" in sys.modules:
    register_auto_classes()
elif not any(isinstance(finder, _RegisterAfterTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())


__all__ = [
    "DEFAULT_ASSISTANT_SETTINGS",
    "KeepPlan",
    "ScatterToFullVocabLogitsProcessor",
    "TokenCounts",
    "TrimmedDraftConfig",
    "TrimmedDraftModel",
    "count_tokens",
    "register_auto_classes",
    "trim_draft",
    "validate_kept_ids",
    "__version__",
]
