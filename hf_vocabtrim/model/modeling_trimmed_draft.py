# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""A draft causal LM whose LM head keeps k of the V vocabulary rows, usable as ``assistant_model``.

This file travels with every saved checkpoint (``auto_map``), so that ``AutoModelForCausalLM.from_pretrained(repo,
trust_remote_code=True)`` works without hf-vocabtrim installed: it imports only torch, transformers, the standard
library and its siblings ``configuration_trimmed_draft.py`` and ``trimmed_head.py``, which travel with it
(``accelerate`` and the package's ``special_token_ids`` are optional, inside ``try``). It is long because the model
class is one unit that travels: building from a draft, loading and validating, context bookkeeping, generation hooks.
"""

from __future__ import annotations

import copy
import importlib
import os
import sys
import threading
import weakref
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel
from transformers.generation import LogitsProcessorList
from transformers.utils import logging

from .configuration_trimmed_draft import TrimmedDraftConfig
from .trimmed_head import (
    ContextSlots,
    ScatterToFullVocabLogitsProcessor,
    TrimmedLMHead,
    check_token_ids,
    scatter_to_full_vocab,
    validate_kept_ids,
)

try:  # optional: builds the wrapper without materialising a second copy of the weights
    from accelerate import init_empty_weights
except ImportError:  # pragma: no cover - remote-code users without accelerate
    init_empty_weights = None

# Assisted-generation settings written into a trimmed draft's generation_config (see README, "How it works").
DEFAULT_ASSISTANT_SETTINGS: dict[str, Any] = {
    "num_assistant_tokens": 5,
    "num_assistant_tokens_schedule": "constant",
    "assistant_confidence_threshold": 0.0,
}

logger = logging.get_logger(__name__)

_HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")
_INITIAL_CONTEXT_CAPACITY = 256
# generate() of one draft runs one call at a time: a forward's context slots are per-model state read by the scatter
_GENERATE_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def _generate_lock(model: Any) -> threading.RLock:
    with _LOCKS_LOCK:
        lock = _GENERATE_LOCKS.get(model)
        if lock is None:
            lock = _GENERATE_LOCKS[model] = threading.RLock()
    return lock


def _check_draft(draft: Any) -> nn.Linear:
    """The draft's LM head; ``ValueError`` for anything this wrapper cannot trim (naming the fix)."""
    if isinstance(draft, TrimmedDraftModel):
        raise ValueError("`draft` is already a TrimmedDraftModel; trim its base draft (`draft.draft`) instead.")
    if not isinstance(draft, PreTrainedModel) or getattr(draft.config, "is_encoder_decoder", False):
        raise ValueError(
            f"`draft` must be a decoder-only Hugging Face causal LM (AutoModelForCausalLM), got {type(draft)}."
        )
    if draft.config.get_text_config(decoder=True) is not draft.config:
        raise ValueError(
            f"`draft` ({type(draft).__name__}) has a composite config ({draft.config.model_type}: text + other "
            "modalities). Load its text model alone, e.g. `AutoModelForCausalLM.from_pretrained(..)` on a text-only "
            "checkpoint or the text class of the architecture (Gemma3ForCausalLM for Gemma 3), and trim that."
        )
    quantizer = getattr(draft, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if quantizer is not None and str(getattr(method, "value", method)) != "gguf":
        raise ValueError(
            f"`draft` is quantized ({method}); its LM head cannot be sliced row by row. Load the draft unquantized "
            "(or dequantize it), trim it, then quantize the trimmed draft's body if you need to."
        )
    if any(p.device.type == "meta" for p in draft.parameters()):
        raise ValueError(
            "`draft` has offloaded (meta) weights (device_map with 'disk' or CPU offload); trimming needs them in "
            "memory. Load it with a device_map that fits in memory, or on the CPU, and trim that."
        )
    head = draft.get_output_embeddings()
    if not isinstance(head, nn.Linear) or not draft.can_generate():
        raise ValueError(
            f"`draft` ({type(draft).__name__}) has no linear LM head or cannot generate: load it with "
            "`AutoModelForCausalLM.from_pretrained(...)`, not `AutoModel`."
        )
    return head


def _settings_into_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Generation settings passed beside a ``generation_config`` (transformers' assisted generation passes
    ``min_new_tokens`` / ``max_new_tokens`` / ``use_cache`` so, which 5.x deprecates with a warning) folded into a copy
    of that config: the same call, as transformers asks for it."""
    config = kwargs.get("generation_config")
    if config is None:
        return kwargs
    settings = {key: value for key, value in kwargs.items() if key != "generation_config" and hasattr(config, key)}
    if not settings:
        return kwargs
    config = copy.copy(config)  # update() sets top-level attributes only; generate() deep-copies it again anyway
    config.update(**settings)
    return {**{k: v for k, v in kwargs.items() if k not in settings}, "generation_config": config}


def _resize_rows(weight: torch.Tensor, rows: int) -> torch.Tensor:
    """The first ``rows`` rows of ``weight`` (a view), or ``weight`` padded with zero rows (a copy)."""
    if rows <= weight.shape[0]:
        return weight[:rows]
    return torch.cat([weight, weight.new_zeros(rows - weight.shape[0], *weight.shape[1:])])


def _kept_ids(
    draft: Any, keep_ids: Any, tokenizer: Any, usable: int, keep_special_tokens: bool, vocab: int, target: Any
) -> torch.Tensor:
    """``keep_ids`` checked (integers in range, no duplicates), sorted, with the special ids added if asked."""
    own_vocab = int(draft.config.get_text_config().vocab_size)
    if tokenizer is not None and len(tokenizer) > usable:
        raise ValueError(
            f"tokenizer/vocabulary mismatch: the tokenizer has {len(tokenizer)} tokens but the draft's vocabulary "
            f"V={own_vocab}" + (f" and the target's V={vocab}" if target is not None else "") + "; a trimmed "
            "draft must share the target's tokenizer. Pass the draft's own tokenizer."
        )
    ids = torch.as_tensor(keep_ids if not isinstance(keep_ids, torch.Tensor) else keep_ids.cpu()).flatten()
    check_token_ids(ids, usable, "keep_ids")
    ids = ids.long()
    kept = torch.unique(ids)  # sorted
    if kept.numel() != ids.numel():
        raise ValueError(f"`keep_ids` has {ids.numel() - kept.numel()} duplicated ids; pass each id once.")
    if keep_special_tokens:
        try:  # absolute: this file also runs as remote code, without the package
            from hf_vocabtrim.data.specials import special_token_ids
        except ImportError as err:  # remote code without the package: pass the ids you need
            raise ValueError(
                "keep_special_tokens=True needs hf-vocabtrim installed (`pip install hf-vocabtrim`); or pass "
                "keep_special_tokens=False with the eos / end-of-turn ids in keep_ids."
            ) from err
        specials = {i for i in special_token_ids(draft.config, draft.generation_config, tokenizer) if i < usable}
        kept = torch.unique(torch.cat([kept, torch.tensor(sorted(specials), dtype=torch.long)]))
    return kept


def _text_config(draft: Any, vocab: int) -> Any:
    """The base draft's config as the trimmed draft's ``text_config``: untied, V = the target's, no quantization,
    no local path."""
    text_config = copy.deepcopy(draft.config)
    text_config.tie_word_embeddings = False
    text_config.vocab_size = vocab
    if hasattr(text_config, "quantization_config"):  # a GGUF-dequantised draft is saved as plain weights
        del text_config.quantization_config
    source = str(getattr(text_config, "_name_or_path", "") or "")
    if os.path.isabs(source) or os.path.exists(source):  # never publish a local path in config.json
        text_config._name_or_path = ""
    return text_config


def _share_weights(model: Any, draft: Any, kept: torch.Tensor, vocab: int, store_head: bool, context: bool) -> None:
    """Give ``model`` (built on the meta device) the draft's tensors where they are: the body and buffers shared, the
    input embedding resized to V, the kept head rows (and the full head where context rows need it), ``kept_ids``;
    a multi-device ``device_map`` is dispatched again with the same map."""
    head, embeddings = draft.get_output_embeddings(), draft.get_input_embeddings()
    head_name = next(name for name, module in draft.named_modules() if module is head)
    emb_name = next(name for name, module in draft.named_modules() if module is embeddings)
    rows = kept.to(head.weight.device)
    state = {f"draft.{n}": t for n, t in draft.state_dict().items() if not n.startswith(f"{head_name}.")}
    state[f"draft.{emb_name}.weight"] = _resize_rows(embeddings.weight.detach(), vocab)
    state[f"draft.{head_name}.weight"] = head.weight.detach().index_select(0, rows).clone()
    if head.bias is not None:
        state[f"draft.{head_name}.bias"] = head.bias.detach().index_select(0, rows).clone()
        if context:
            state["context_head_bias"] = _resize_rows(head.bias.detach(), vocab)
    if store_head:
        state["context_head_weight"] = _resize_rows(head.weight.detach(), vocab)
    state["kept_ids"] = kept.to(head.weight.device)
    model.load_state_dict(state, strict=True, assign=True)
    for name, buffer in draft.named_buffers():  # non-persistent buffers (rotary tables...) where they were
        module_name, _, attr = f"draft.{name}".rpartition(".")
        setattr(model.get_submodule(module_name), attr, buffer)
    device_map = getattr(draft, "hf_device_map", None)
    if device_map:
        placed = {f"draft.{k}" if k else "draft": v for k, v in device_map.items()}
        model.__dict__["hf_device_map"] = placed
        if len(set(device_map.values())) > 1:  # keep the placement: hooks move activations between devices
            from accelerate import dispatch_model

            dispatch_model(model, device_map=placed)


class TrimmedDraftModel(PreTrainedModel, GenerationMixin):
    """A draft causal LM with its LM head sliced to the k ids in ``kept_ids``, for ``generate(assistant_model=...)``.

    - ``self.draft`` is the base ``AutoModelForCausalLM`` (full input embeddings, full body) whose output embedding
      is a :class:`TrimmedLMHead` of k rows; architecture-specific logit post-processing (e.g. Gemma's final logit
      soft-capping) still applies.
    - ``kept_ids`` (persistent int64 buffer, length k, sorted) maps draft index i -> target token id.
    - With ``config.context_tokens``, every forward also scores the ids already in the sequence (prompt and output
      so far): a forward with an empty cache starts a sequence; each forward adds the rows of the new ids it is fed.
      ``draft_ids`` is then ``kept_ids`` followed by those ids, in the order of the logit columns.
    - ``config.vocab_size`` is the target's V, so transformers takes the same-tokenizer assisted path; the draft's own
      ``generate()`` scatters its logits back to V before any other logits processor.
    """

    config_class = TrimmedDraftConfig
    kept_ids: torch.Tensor
    draft: Any  # the base AutoModelForCausalLM
    _context: dict[str, Any]
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
        hidden, has_bias = head.weight.shape[1], head.bias is not None
        self.draft.set_output_embeddings(TrimmedLMHead(hidden, config.draft_vocab_size, bias=has_bias))
        self.register_buffer("kept_ids", torch.full((config.draft_vocab_size,), -1, dtype=torch.long))
        vocab = int(config.vocab_size or 0)
        if config.context_tokens and config.context_rows == "stored_head":
            self.register_buffer("context_head_weight", torch.empty(vocab, hidden))  # filled by loading / from_draft
        if config.context_tokens and has_bias:
            self.register_buffer("context_head_bias", torch.empty(vocab))
        self._no_split_modules = getattr(self.draft, "_no_split_modules", None)
        self._context: dict[str, Any] = {}
        self.post_init()

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def from_draft(
        cls,
        draft: PreTrainedModel,
        keep_ids: Iterable[int] | torch.Tensor,
        *,
        tokenizer: Any | None = None,
        target: PreTrainedModel | Any | None = None,
        keep_special_tokens: bool = True,
        context_tokens: bool | None = None,
        trimming: dict[str, Any] | None = None,
        assistant_settings: dict[str, Any] | None = None,
        fast_path: str = "auto",
    ) -> TrimmedDraftModel:
        """Build a trimmed draft from any Hugging Face causal LM draft and the target ids to keep.

        Args:
            draft: the base draft (``AutoModelForCausalLM``); its body and input embeddings are shared, not copied,
                and stay where they are placed (``device_map`` included).
            keep_ids: target token ids to keep (unique, in [0, V)); stored sorted.
            tokenizer: the shared tokenizer; checked against V, and its special / end-of-turn tokens are kept.
            target: the target model (or its config). Its vocabulary size V becomes the trimmed draft's (scores are
                scattered into the target's V; a padded target vocabulary is supported: the draft's input embedding
                gets zero rows, and the tokenizer must fit both models).
            keep_special_tokens: add eos/pad/bos and the chat template's end-of-turn tokens to ``keep_ids``.
            context_tokens: also score the ids already in the sequence in every forward. Default: on where it costs
                no memory (the draft ties its head to its input embedding); on an untied draft, ``True`` keeps the
                full head in the checkpoint (``context_head_weight``: V x hidden).
            trimming: provenance saved in ``config.trimming`` (data, coverage, latency reduction...).
            assistant_settings: overrides of :data:`DEFAULT_ASSISTANT_SETTINGS` for the draft's generation config.
            fast_path: ``"auto"`` (CUDA-graph captured proposals over a static cache on a CUDA device, the eager path
                elsewhere), ``"eager"`` or ``"static"``; see :class:`TrimmedDraftConfig`.
        """
        head = _check_draft(draft)
        own_vocab = int(draft.config.get_text_config().vocab_size)
        if head.weight.shape[0] != own_vocab:
            raise ValueError(
                f"`draft` LM head has {head.weight.shape[0]} rows but config.vocab_size={own_vocab}; it is already "
                "resized or trimmed. Start from the untouched base draft."
            )
        target_config: Any = getattr(target, "config", target)
        vocab = own_vocab if target_config is None else int(target_config.get_text_config().vocab_size)
        kept = _kept_ids(draft, keep_ids, tokenizer, min(vocab, own_vocab), keep_special_tokens, vocab, target)
        embeddings: Any = draft.get_input_embeddings()
        tied = head.weight.data_ptr() == embeddings.weight.data_ptr()
        context_tokens = tied if context_tokens is None else bool(context_tokens)
        config = TrimmedDraftConfig(
            text_config=_text_config(draft, vocab),
            draft_vocab_size=kept.numel(),
            context_tokens=context_tokens,
            context_rows=("input_embeddings" if tied else "stored_head") if context_tokens else None,
            base_vocab_size=own_vocab if own_vocab != vocab else None,
            trimming=trimming,
            fast_path=fast_path,
        )
        if init_empty_weights is not None:
            with init_empty_weights():
                model = cls(config)
        else:  # pragma: no cover
            model = cls(config)
        _share_weights(model, draft, kept, vocab, context_tokens and not tied, context_tokens)
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
                    f"{config_dict.get('model_type')!r}). Build one with `TrimmedDraftModel.from_draft(draft, "
                    "keep_ids)` or `vocabtrim trim`, or load it with AutoModelForCausalLM."
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

    # ----------------------------------------------------------------------------------------------- context ids
    def _context_source(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """V-row weight (and bias) the rows of context ids are gathered from."""
        if self.config.context_rows == "stored_head":
            weight: Any = self.get_buffer("context_head_weight")
        else:
            weight = self.draft.get_input_embeddings().weight
        return weight, getattr(self, "context_head_bias", None)

    def _scorable(self, device: torch.device) -> torch.Tensor:
        """(V,) bool on ``device``: ids a context slot scores (not kept, not a padding id of a padded vocabulary)."""
        cached = self._context.get("scorable")
        if cached is None or cached.device != device:
            cached = torch.ones(int(self.config.vocab_size), dtype=torch.bool, device=device)
            cached[self.kept_ids.to(device)] = False
            cached[int(self.config.base_vocab_size or self.config.vocab_size) :] = False
            self._context["scorable"] = cached
        return cached

    def _fill_context(self, input_ids: torch.Tensor | None, inputs_embeds: Any, past: Any) -> ContextSlots:
        """Record the positions this forward feeds in the context slots of its cache (see :class:`ContextSlots`)."""
        batch, length = (input_ids if input_ids is not None else inputs_embeds).shape[:2]
        head = self.draft.get_output_embeddings()
        weight, bias = self._context_source()
        fixed = bool(getattr(past, "is_compileable", False))  # a static cache: a tensor length, fixed positions
        if fixed:
            full = [i for i, sliding in enumerate(past.is_sliding) if not sliding]
            start: Any = past.get_seq_length(full[0] if full else 0)
        else:
            start = past.get_seq_length() if hasattr(past, "get_seq_length") else 0
        slots = getattr(past, "_vocabtrim_context_slots", None)  # the slots live and die with their cache
        if slots is None or slots.ids.shape[0] != batch or slots.ids.device != head.weight.device:
            capacity = max(getattr(layer, "max_cache_len", 0) for layer in past.layers) if fixed else 0
            capacity = capacity or max(_INITIAL_CONTEXT_CAPACITY, int(start) + length)
            slots = ContextSlots(batch, capacity, head.weight, bias is not None, fixed=fixed)
            if past is not None:
                past._vocabtrim_context_slots = slots
        slots.fill(input_ids, length, start, weight, bias, self._scorable(slots.ids.device))
        self._context["last"] = slots
        return slots

    @property
    def draft_ids(self) -> torch.Tensor:
        """Target id of each logit column of the last forward: ``kept_ids``, then its context slots (an id may repeat;
        masked slots score ``-inf``)."""
        slots = self._context.get("last") if self.config.context_tokens else None
        if slots is None or slots.width == 0:
            return self.kept_ids
        return torch.cat([self.kept_ids.to(slots.ids.device), slots.id_map()])

    # ----------------------------------------------------------------------------------------------- running
    def _init_weights(self, module: nn.Module) -> None:
        if module is not self:
            self.draft._init_weights(module)

    def get_input_embeddings(self) -> nn.Module:
        return self.draft.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.draft.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        caller = sys._getframe(1).f_locals.get("self")
        if type(caller).__name__ == "AssistantToTargetTranslator":  # would prune k rows by V-range ids: IndexError
            raise ValueError(
                "universal assisted decoding with sampling (target and draft with different tokenizers) prunes the "
                "draft's LM head to the target's vocabulary, which a trimmed head cannot be. Use the untrimmed draft "
                "there, or trim a draft that shares the target's tokenizer and drop `tokenizer`/`assistant_tokenizer`."
            )
        return self.draft.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        raise ValueError(
            "a trimmed draft's LM head is fixed by `kept_ids` (k rows); replacing it would break the id map. Trim the "
            "base draft again with `TrimmedDraftModel.from_draft`. (Universal assisted decoding with different "
            "tokenizers prunes the head itself: use the untrimmed draft there.)"
        )

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError(
            "a trimmed draft's vocabulary is fixed by `kept_ids` and its input embedding by the target's V; resize the "
            "base draft (`model.draft` or the original) and trim it again with `TrimmedDraftModel.from_draft`."
        )

    @property
    def full_vocab_size(self) -> int:
        """V, the target's vocabulary size."""
        return int(self.config.vocab_size)

    def to_full_vocab(self, logits: torch.Tensor) -> torch.Tensor:
        """Scatter draft logits (..., len(draft_ids)) into target-id space (..., V), ``-inf`` elsewhere."""
        return scatter_to_full_vocab(logits, self.draft_ids, self.full_vocab_size, self.kept_ids.numel())

    def to_target_ids(self, draft_indices: torch.Tensor) -> torch.Tensor:
        """Map draft indices (logit columns) to target token ids."""
        return self.draft_ids[draft_indices]

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Any,
    ) -> Any:
        """Run the base draft. Returns its ``CausalLMOutputWithPast`` with ``logits`` of shape (batch, seq, n): scores
        over ``draft_ids`` (``kept_ids``, then context ids), in that order. Use :meth:`to_full_vocab` for
        (batch, seq, V) target-space logits; ``generate()`` does this itself."""
        if kwargs.get("labels") is not None:
            raise ValueError(
                "TrimmedDraftModel.forward does not take `labels`: logits are over the kept ids. Map labels with "
                "`torch.searchsorted(model.kept_ids, labels)` and compute the loss on draft indices yourself."
            )
        past: Any = cache if cache is not None else kwargs.get("past_key_values")
        slots = self._fill_context(input_ids, inputs_embeds, past) if self.config.context_tokens else None
        self.draft.get_output_embeddings().slots = slots
        if cache is not None:
            kwargs["cache"] = cache
        out = self.draft(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        if slots is not None and slots.width and slots.scored_now is not None:
            # after the architecture's own post-processing (e.g. soft-capping, which would turn -inf finite)
            k, logits = self.kept_ids.numel(), out.logits
            context = logits[..., k:].masked_fill(~slots.scored_now, float("-inf"))
            out.logits = torch.cat([logits[..., :k], context], dim=-1)
        return out

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """transformers' ``generate()``. Called as an ``assistant_model`` with ``config.fast_path`` ``"auto"`` (on a
        CUDA device) or ``"static"``, the proposals run over a static KV cache this draft owns, as CUDA-graph replays
        on a GPU (``hf_vocabtrim.model.fast_path``, which needs the package installed); where that path does not apply
        (batch > 1, an unsupported cache, ...), it says why once and this eager path runs. Calls from several threads
        run one at a time (a forward's context slots are state of the model)."""

        def eager(*call_args: Any, **call_kwargs: Any) -> Any:
            return super(TrimmedDraftModel, self).generate(*call_args, **_settings_into_config(call_kwargs))

        with _generate_lock(self):
            if getattr(self.config, "fast_path", "auto") != "eager":
                try:
                    fast_path = importlib.import_module("hf_vocabtrim.model.fast_path")
                except ImportError:
                    logger.warning_once(
                        "TrimmedDraftModel: fast_path needs hf-vocabtrim installed (`pip install hf-vocabtrim`); "
                        "running the eager path."
                    )
                else:
                    return fast_path.generate(self, eager, *args, **kwargs)
            return eager(*args, **kwargs)

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        cache: Any | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if cache is not None:
            kwargs["cache"] = cache
        return self.draft.prepare_inputs_for_generation(
            input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
        )

    def _validate_model_kwargs(self, model_kwargs: dict[str, Any]) -> None:
        self.draft._validate_model_kwargs(model_kwargs)  # the base draft's signatures say what it accepts

    def _get_logits_processor(self, *args: Any, **kwargs: Any) -> LogitsProcessorList:
        """The generation processors, with the scatter to V first so every other processor sees V-wide scores."""
        processors = super()._get_logits_processor(*args, **kwargs)  # type: ignore[misc]
        id_map = (lambda: self.draft_ids) if self.config.context_tokens else self.kept_ids
        processors.insert(0, ScatterToFullVocabLogitsProcessor(id_map, self.full_vocab_size, self.kept_ids.numel()))
        return processors


__all__ = [
    "ContextSlots",
    "ScatterToFullVocabLogitsProcessor",
    "TrimmedDraftModel",
    "TrimmedLMHead",
    "scatter_to_full_vocab",
    "validate_kept_ids",
]


if __name__ == "hf_vocabtrim.model.modeling_trimmed_draft":  # the package's copy, not remote code
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.register(TrimmedDraftConfig, TrimmedDraftModel, exist_ok=True)
    TrimmedDraftModel.register_for_auto_class("AutoModelForCausalLM")  # save_pretrained copies the code files
