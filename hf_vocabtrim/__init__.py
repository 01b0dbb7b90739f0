# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""hf-vocabtrim: vocabulary-trimmed draft models for Hugging Face speculative decoding."""

from transformers import AutoConfig, AutoModelForCausalLM

from .configuration_trimmed_draft import TrimmedDraftConfig
from .modeling_trimmed_draft import (
    DEFAULT_ASSISTANT_SETTINGS,
    ScatterToFullVocabLogitsProcessor,
    TrimmedDraftModel,
    validate_kept_ids,
)

__version__ = "0.3.0"

AutoConfig.register(TrimmedDraftConfig.model_type, TrimmedDraftConfig, exist_ok=True)
AutoModelForCausalLM.register(TrimmedDraftConfig, TrimmedDraftModel, exist_ok=True)
# save_pretrained writes `auto_map` and copies the two code files, for trust_remote_code users.
TrimmedDraftConfig.register_for_auto_class()
TrimmedDraftModel.register_for_auto_class("AutoModelForCausalLM")

__all__ = [
    "DEFAULT_ASSISTANT_SETTINGS",
    "ScatterToFullVocabLogitsProcessor",
    "TrimmedDraftConfig",
    "TrimmedDraftModel",
    "validate_kept_ids",
    "__version__",
]
