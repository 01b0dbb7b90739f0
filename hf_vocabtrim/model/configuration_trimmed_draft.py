# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Configuration of a vocabulary-trimmed draft model.

This file travels with every saved checkpoint (``auto_map``), so it imports only ``transformers``.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

CONTEXT_ROWS = ("input_embeddings", "stored_head")
FAST_PATHS = ("auto", "eager", "static")


class TrimmedDraftConfig(PretrainedConfig):
    """Config of a draft causal LM whose LM head keeps ``draft_vocab_size`` rows of the full vocabulary.

    Args:
        text_config: the config of the base draft (any ``AutoModelForCausalLM`` architecture). Its ``vocab_size`` is
            the target's vocabulary V: the input embedding keeps all V rows and transformers sees a draft that
            shares the target's tokenizer. ``get_text_config()`` returns it, so caches are built from it.
        draft_vocab_size: k, the number of LM-head rows kept (the length of the ``kept_ids`` buffer).
        context_tokens: in every forward, also score the ids already in the sequence (prompt and output so far).
        context_rows: where the LM-head rows of context ids come from: ``"input_embeddings"`` (the base draft ties
            its head to its input embedding, so the rows cost no memory) or ``"stored_head"`` (an untied draft: the
            full head is kept in the checkpoint as ``context_head_weight``).
        base_vocab_size: the base draft's own vocabulary size where it differs from V (a target whose vocabulary is
            padded, e.g. Qwen2.5-7B's 152,064 vs Qwen2.5-0.5B's 151,936); ids at or above it are padding rows.
        trimming: free-form provenance (data, coverage, latency reduction); saved as-is in ``config.json``.
        fast_path: how the draft proposes when it is an ``assistant_model``: ``"auto"`` (replays of a CUDA graph over
            a static KV cache it owns, on a CUDA device where that applies; the eager path otherwise), ``"eager"``
            (transformers' own ``generate()`` loop) or ``"static"`` (the static-cache path without capture, on any
            device). The static and captured paths need hf-vocabtrim installed (``hf_vocabtrim.model.fast_path``).
    """

    model_type = "trimmed_draft"
    sub_configs = {"text_config": AutoConfig}

    def __init__(
        self,
        text_config: PretrainedConfig | dict[str, Any] | None = None,
        draft_vocab_size: int | None = None,
        context_tokens: bool = False,
        context_rows: str | None = None,
        base_vocab_size: int | None = None,
        trimming: dict[str, Any] | None = None,
        fast_path: str = "auto",
        **kwargs: Any,
    ) -> None:
        if isinstance(text_config, dict):
            text_config = dict(text_config)
            model_type = text_config.pop("model_type", None)
            if model_type is None:
                raise ValueError("TrimmedDraftConfig: `text_config` has no `model_type`; pass the base draft's config.")
            text_config = AutoConfig.for_model(model_type, **text_config)
        if context_tokens and context_rows not in CONTEXT_ROWS:
            raise ValueError(f"TrimmedDraftConfig: `context_rows` must be one of {CONTEXT_ROWS}, got {context_rows!r}.")
        if fast_path not in FAST_PATHS:
            raise ValueError(f"TrimmedDraftConfig: `fast_path` must be one of {FAST_PATHS}, got {fast_path!r}.")
        self.text_config = text_config
        self.draft_vocab_size = draft_vocab_size
        self.context_tokens = bool(context_tokens)
        self.context_rows = context_rows if context_tokens else None
        self.base_vocab_size = base_vocab_size
        self.trimming = dict(trimming or {})
        self.fast_path = fast_path
        kwargs.setdefault("tie_word_embeddings", False)  # the sliced head is its own parameter, never re-tied
        super().__init__(**kwargs)

    @property
    def vocab_size(self) -> int | None:
        """The full vocabulary V (the base draft's ``vocab_size``, the target's), not k."""
        return None if self.text_config is None else self.text_config.vocab_size

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        output.pop("vocab_size", None)  # derived from text_config
        return output


if __name__ == "hf_vocabtrim.model.configuration_trimmed_draft":  # the package's copy, not remote code
    AutoConfig.register(TrimmedDraftConfig.model_type, TrimmedDraftConfig, exist_ok=True)
    TrimmedDraftConfig.register_for_auto_class()  # save_pretrained writes auto_map and copies this file
