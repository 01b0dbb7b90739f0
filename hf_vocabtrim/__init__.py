# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""hf-vocabtrim: vocabulary-trimmed draft models for Hugging Face speculative decoding.

The package reads as its pipeline: ``data`` (chats -> assistant-token counts), ``selection`` (counts -> a keep plan:
the ordered ids and the chosen k), ``model`` (a keep plan applied to a draft: ``TrimmedDraftModel``), ``engines``
(EAGLE-3 heads and token maps for vLLM / SGLang, the vLLM plugin); ``measure`` times things on your hardware and
``commands`` is the ``vocabtrim`` command line.
"""

from typing import Any

from transformers import AutoConfig, AutoModelForCausalLM

from .model.configuration_trimmed_draft import TrimmedDraftConfig
from .model.modeling_trimmed_draft import (
    DEFAULT_ASSISTANT_SETTINGS,
    ScatterToFullVocabLogitsProcessor,
    TrimmedDraftModel,
    validate_kept_ids,
)

__version__ = "0.4.0"

AutoConfig.register(TrimmedDraftConfig.model_type, TrimmedDraftConfig, exist_ok=True)
AutoModelForCausalLM.register(TrimmedDraftConfig, TrimmedDraftModel, exist_ok=True)
# save_pretrained writes `auto_map` and copies the two code files, for trust_remote_code users.
TrimmedDraftConfig.register_for_auto_class()
TrimmedDraftModel.register_for_auto_class("AutoModelForCausalLM")

# the pipeline's entry points, imported on first use (they pull in datasets, optuna...: `import hf_vocabtrim` stays
# as light as the model it registers)
_LAZY = {
    "KeepPlan": ".selection.keep_plan",
    "TokenCounts": ".data.counts",
    "count_tokens": ".data.counting",
    "trim_draft": ".model.trimming",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'hf_vocabtrim' has no attribute {name!r}")


__all__ = [
    "DEFAULT_ASSISTANT_SETTINGS",
    "KeepPlan",
    "ScatterToFullVocabLogitsProcessor",
    "TokenCounts",
    "TrimmedDraftConfig",
    "TrimmedDraftModel",
    "count_tokens",
    "trim_draft",
    "validate_kept_ids",
    "__version__",
]
