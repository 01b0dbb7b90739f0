# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""A draft causal LM whose LM head keeps k of the V vocabulary rows, usable as ``assistant_model``.

This file travels with every saved checkpoint (``auto_map``), so that ``AutoModelForCausalLM.from_pretrained(repo,
trust_remote_code=True)`` works without hf-vocabtrim installed: it imports only torch, transformers and its sibling
configuration file (``accelerate`` is optional, inside ``try``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.generation import LogitsProcessor, LogitsProcessorList

from .configuration_trimmed_draft import TrimmedDraftConfig

try:  # optional: builds the wrapper without materialising a second copy of the weights
    from accelerate import init_empty_weights
except ImportError:  # pragma: no cover - remote-code users without accelerate
    init_empty_weights = None

# Assisted-generation settings written into a trimmed draft's generation_config (see README, "Settings").
DEFAULT_ASSISTANT_SETTINGS: dict[str, Any] = {
    "num_assistant_tokens": 5,
    "num_assistant_tokens_schedule": "constant",
    "assistant_confidence_threshold": 0.0,
}

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


class ScatterToFullVocabLogitsProcessor(LogitsProcessor):
    """Scatters k-wide draft scores into the full vocabulary V; ids outside the kept set get ``-inf``.

    A :class:`TrimmedDraftModel` puts it first in its own logits processors, so every other processor, the
    assisted-generation verifier (``q`` for speculative sampling) and ``output_scores`` see full-V scores in
    target-id space. It never touches the target's processors.
    """

    def __init__(self, kept_ids: torch.Tensor, vocab_size: int) -> None:
        self.kept_ids = kept_ids
        self.vocab_size = vocab_size

    def __call__(self, input_ids: torch.Tensor | None, scores: torch.Tensor) -> torch.Tensor:
        return scatter_to_full_vocab(scores, self.kept_ids, self.vocab_size)


def scatter_to_full_vocab(scores: torch.Tensor, kept_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """(..., k) scores over the kept ids -> (..., V) scores in target-id space, ``-inf`` outside the kept set."""
    k = kept_ids.numel()
    if scores.shape[-1] == vocab_size:
        return scores  # already in target-id space (e.g. k == V, or called twice)
    if scores.shape[-1] != k:
        raise ValueError(
            f"scores have width {scores.shape[-1]}, expected the draft's k={k} (or V={vocab_size}); the k -> V "
            "scatter belongs to the trimmed draft's own generate()."
        )
    full = scores.new_full((*scores.shape[:-1], vocab_size), float("-inf"))
    return full.index_copy_(-1, kept_ids.to(scores.device), scores)


def _check_token_ids(kept_ids: torch.Tensor, vocab_size: int, field: str) -> None:
    """Raise ``ValueError`` unless ``kept_ids`` is a non-empty 1-D integer tensor of ids in [0, V)."""
    if kept_ids.ndim != 1 or kept_ids.numel() == 0:
        raise ValueError(f"`{field}` must be a non-empty 1-D list of token ids, got shape {tuple(kept_ids.shape)}.")
    if kept_ids.dtype.is_floating_point or kept_ids.dtype == torch.bool:
        raise ValueError(f"`{field}` must hold integer token ids, got dtype {kept_ids.dtype}.")
    lo, hi = int(kept_ids.min()), int(kept_ids.max())
    if lo < 0 or hi >= vocab_size:
        raise ValueError(
            f"`{field}` has ids out of range [{lo}, {hi}]; the vocabulary has V={vocab_size} ids (0..{vocab_size - 1})."
        )


def validate_kept_ids(kept_ids: torch.Tensor, vocab_size: int, field: str = "kept_ids") -> None:
    """Raise ``ValueError`` unless ``kept_ids`` is a non-empty, strictly increasing 1-D tensor of ids in [0, V)."""
    _check_token_ids(kept_ids, vocab_size, field)
    if kept_ids.numel() > 1 and not bool((kept_ids[1:] > kept_ids[:-1]).all()):
        raise ValueError(f"`{field}` must be sorted ascending without duplicates.")


def special_token_ids(config: Any, generation_config: Any, tokenizer: Any | None) -> set[int]:
    """Ids a draft must be able to emit: eos/pad/bos of config and generation config, the tokenizer's special
    tokens, and the added tokens that the chat template writes right after an assistant turn (end of turn)."""
    ids: set[int] = set()
    for source in (config, generation_config, tokenizer):
        for name in ("eos_token_id", "pad_token_id", "bos_token_id"):
            value = getattr(source, name, None) if source is not None else None
            if value is None:
                continue
            ids.update(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    if tokenizer is not None:
        ids.update(int(i) for i in tokenizer.all_special_ids)
        if getattr(tokenizer, "chat_template", None):
            marker = "Xq7Zassistantmarker"
            chat = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": marker}]
            try:
                text = tokenizer.apply_chat_template(chat, tokenize=False)
            except Exception:  # a template that rejects this chat: fall back to the special tokens above
                text = ""
            if isinstance(text, str) and marker in text:
                suffix = text.split(marker, 1)[1]
                added = set(getattr(tokenizer, "added_tokens_decoder", {}))
                ids.update(i for i in tokenizer(suffix, add_special_tokens=False)["input_ids"] if i in added)
    return ids


class TrimmedDraftModel(PreTrainedModel, GenerationMixin):
    """A draft causal LM with its LM head sliced to the k ids in ``kept_ids``, for ``generate(assistant_model=...)``.

    - ``self.draft`` is the base ``AutoModelForCausalLM`` (full input embeddings, full body) whose output embedding
      is a new, untied ``nn.Linear(hidden, k)``; architecture-specific logit post-processing (e.g. Gemma's final
      logit soft-capping) still applies.
    - ``kept_ids`` (persistent int64 buffer, length k, sorted) maps draft index i -> target token id.
    - ``config.vocab_size`` is the full V, so transformers takes the same-tokenizer assisted path; the draft's own
      ``generate()`` scatters its k logits back to V before any other logits processor.
    """

    config_class = TrimmedDraftConfig
    kept_ids: torch.Tensor
    base_model_prefix = "draft"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def __init__(self, config: TrimmedDraftConfig) -> None:
        super().__init__(config)
        if config.text_config is None or config.draft_vocab_size is None:
            raise ValueError(
                "TrimmedDraftConfig needs `text_config` and `draft_vocab_size`: this is not a trimmed-draft config. "
                "Build one with `TrimmedDraftModel.from_draft(draft, keep_ids)` or `vocabtrim trim`."
            )
        text_config = copy.deepcopy(config.text_config)
        text_config.tie_word_embeddings = False
        self.draft = AutoModelForCausalLM.from_config(text_config)
        head = self.draft.get_output_embeddings()
        hidden = head.weight.shape[1]
        self.draft.set_output_embeddings(nn.Linear(hidden, config.draft_vocab_size, bias=head.bias is not None))
        self.register_buffer("kept_ids", torch.full((config.draft_vocab_size,), -1, dtype=torch.long))
        self._no_split_modules = getattr(self.draft, "_no_split_modules", None)
        self.post_init()

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def from_draft(
        cls,
        draft: PreTrainedModel,
        keep_ids: Iterable[int] | torch.Tensor,
        *,
        tokenizer: Any | None = None,
        target: PreTrainedModel | None = None,
        keep_special_tokens: bool = True,
        trimming: dict[str, Any] | None = None,
        assistant_settings: dict[str, Any] | None = None,
    ) -> TrimmedDraftModel:
        """Build a trimmed draft from any Hugging Face causal LM draft and the target ids to keep.

        Args:
            draft: the base draft (``AutoModelForCausalLM``); its body and input embeddings are shared, not copied.
            keep_ids: target token ids to keep (unique, in [0, V)); stored sorted.
            tokenizer: the shared tokenizer; checked against V, and its special / end-of-turn tokens are kept.
            target: the target model, checked to have the same vocabulary size V as the draft.
            keep_special_tokens: add eos/pad/bos and the chat template's end-of-turn tokens to ``keep_ids``.
            trimming: provenance saved in ``config.trimming`` (data, coverage, latency reduction...).
            assistant_settings: overrides of :data:`DEFAULT_ASSISTANT_SETTINGS` for the draft's generation config.
        """
        if isinstance(draft, TrimmedDraftModel):
            raise ValueError("`draft` is already a TrimmedDraftModel; trim its base draft (`draft.draft`) instead.")
        if not isinstance(draft, PreTrainedModel) or getattr(draft.config, "is_encoder_decoder", False):
            raise ValueError(
                f"`draft` must be a decoder-only Hugging Face causal LM (AutoModelForCausalLM), got {type(draft)}."
            )
        head = draft.get_output_embeddings()
        if not isinstance(head, nn.Linear) or not draft.can_generate():
            raise ValueError(
                f"`draft` ({type(draft).__name__}) has no linear LM head or cannot generate: load it with "
                "`AutoModelForCausalLM.from_pretrained(...)`, not `AutoModel`."
            )
        vocab_size = int(draft.config.get_text_config().vocab_size)
        if head.weight.shape[0] != vocab_size:
            raise ValueError(
                f"`draft` LM head has {head.weight.shape[0]} rows but config.vocab_size={vocab_size}; it is already "
                "resized or trimmed. Start from the untouched base draft."
            )
        if target is not None:
            target_vocab = int(target.config.get_text_config().vocab_size)
            if target_vocab != vocab_size:
                raise ValueError(
                    f"draft/target vocabulary mismatch: the draft has V={vocab_size}, the target V={target_vocab}. "
                    "A trimmed draft must share the target's tokenizer and vocabulary size."
                )
        if tokenizer is not None and len(tokenizer) > vocab_size:
            raise ValueError(
                f"tokenizer/vocabulary mismatch: the tokenizer has {len(tokenizer)} tokens but the draft's vocabulary "
                f"V={vocab_size}; pass the draft's own tokenizer."
            )
        ids = torch.as_tensor(keep_ids if not isinstance(keep_ids, torch.Tensor) else keep_ids.cpu()).flatten()
        _check_token_ids(ids, vocab_size, "keep_ids")
        ids = ids.long()
        uniq = torch.unique(ids)
        if uniq.numel() != ids.numel():
            raise ValueError(f"`keep_ids` has {ids.numel() - uniq.numel()} duplicated ids; pass each id once.")
        if keep_special_tokens:
            specials = special_token_ids(draft.config, draft.generation_config, tokenizer)
            specials = {i for i in specials if 0 <= i < vocab_size}
            uniq = torch.unique(torch.cat([uniq, torch.tensor(sorted(specials), dtype=torch.long)]))
        kept = uniq  # torch.unique sorts
        k = kept.numel()

        text_config = copy.deepcopy(draft.config)
        text_config.tie_word_embeddings = False
        if hasattr(text_config, "quantization_config"):  # a GGUF-dequantised draft is saved as plain weights
            del text_config.quantization_config
        config = TrimmedDraftConfig(text_config=text_config, draft_vocab_size=k, trimming=trimming)
        if init_empty_weights is not None:
            with init_empty_weights():
                model = cls(config)
        else:  # pragma: no cover
            model = cls(config)

        head_name = next(name for name, module in draft.named_modules() if module is head)
        rows = kept.to(head.weight.device)
        state = {f"draft.{n}": t for n, t in draft.state_dict().items() if not n.startswith(f"{head_name}.")}
        state[f"draft.{head_name}.weight"] = head.weight.detach().index_select(0, rows).clone()
        if head.bias is not None:
            state[f"draft.{head_name}.bias"] = head.bias.detach().index_select(0, rows).clone()
        state["kept_ids"] = kept.to(head.weight.device)
        model.load_state_dict(state, strict=True, assign=True)
        model.to(head.weight.device)  # type: ignore[arg-type]

        model.generation_config = copy.deepcopy(draft.generation_config)
        for key, value in {**DEFAULT_ASSISTANT_SETTINGS, **(assistant_settings or {})}.items():
            setattr(model.generation_config, key, value)
        model.train(draft.training)
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *model_args: Any, **kwargs: Any) -> Any:
        """Load a trimmed draft (local folder or Hub repo id); rejects non-trimmed checkpoints and corrupt id maps."""
        if kwargs.get("config") is None:
            from transformers import PretrainedConfig

            hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
            config_dict, _ = PretrainedConfig.get_config_dict(pretrained_model_name_or_path, **hub_kwargs)
            if config_dict.get("model_type") != TrimmedDraftConfig.model_type:
                raise ValueError(
                    f"{pretrained_model_name_or_path} is not a trimmed draft (model_type="
                    f"{config_dict.get('model_type')!r}). Build one with "
                    "`TrimmedDraftModel.from_draft(draft, keep_ids)` "
                    "or `vocabtrim trim`, or load it with AutoModelForCausalLM."
                )
        want_info = kwargs.pop("output_loading_info", False)
        loaded: Any = super().from_pretrained(
            pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
        )
        model, info = loaded
        missing = sorted(info.get("missing_keys", ()))  # nothing is tied, so every weight must be in the file
        if missing:
            raise ValueError(
                f"{pretrained_model_name_or_path}: the checkpoint lacks {missing}; it is not a complete trimmed draft. "
                "Re-create it with `vocabtrim trim`."
            )
        try:
            validate_kept_ids(model.kept_ids, model.config.vocab_size)
        except ValueError as err:
            raise ValueError(
                f"{pretrained_model_name_or_path}: corrupt id map: {err} Re-create it with `vocabtrim trim`."
            ) from None
        if model.kept_ids.numel() != model.config.draft_vocab_size:
            raise ValueError(
                f"{pretrained_model_name_or_path}: corrupt id map: kept_ids has {model.kept_ids.numel()} ids but "
                f"config.draft_vocab_size={model.config.draft_vocab_size}."
            )
        return (model, info) if want_info else model

    # ----------------------------------------------------------------------------------------------- running
    def _init_weights(self, module: nn.Module) -> None:
        if module is not self:
            self.draft._init_weights(module)

    def get_input_embeddings(self) -> nn.Module:
        return self.draft.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.draft.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.draft.get_output_embeddings()

    @property
    def full_vocab_size(self) -> int:
        """V, the target's vocabulary size."""
        return int(self.config.vocab_size)

    def to_full_vocab(self, logits: torch.Tensor) -> torch.Tensor:
        """Scatter k-wide draft logits (..., k) into target-id space (..., V), ``-inf`` outside the kept set."""
        return scatter_to_full_vocab(logits, self.kept_ids, self.full_vocab_size)

    def to_target_ids(self, draft_indices: torch.Tensor) -> torch.Tensor:
        """Map draft indices (0..k-1) to target token ids."""
        return self.kept_ids[draft_indices]

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> Any:
        """Run the base draft. Returns its ``CausalLMOutputWithPast`` with ``logits`` of shape (batch, seq, k):
        scores over the kept ids, in draft-index order (``kept_ids[i]`` is the target id of column i). Use
        :meth:`to_full_vocab` for (batch, seq, V) target-space logits; ``generate()`` does this itself."""
        if kwargs.get("labels") is not None:
            raise ValueError(
                "TrimmedDraftModel.forward does not take `labels`: logits are over the k kept ids. Map labels with "
                "`torch.searchsorted(model.kept_ids, labels)` and compute the loss on draft indices yourself."
            )
        return self.draft(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep, **kwargs)

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.draft.prepare_inputs_for_generation(*args, **kwargs)

    def _validate_model_kwargs(self, model_kwargs: dict[str, Any]) -> None:
        self.draft._validate_model_kwargs(model_kwargs)  # the base draft's signatures say what it accepts

    def _get_logits_processor(self, *args: Any, **kwargs: Any) -> LogitsProcessorList:
        """The generation processors, with the k -> V scatter first so every other processor sees V-wide scores."""
        processors = super()._get_logits_processor(*args, **kwargs)  # type: ignore[misc]
        processors.insert(0, ScatterToFullVocabLogitsProcessor(self.kept_ids, self.full_vocab_size))
        return processors


__all__ = [
    "ScatterToFullVocabLogitsProcessor",
    "TrimmedDraftModel",
    "scatter_to_full_vocab",
    "special_token_ids",
    "validate_kept_ids",
]
