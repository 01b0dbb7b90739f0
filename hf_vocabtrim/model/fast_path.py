# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Captured drafting, the dispatch: which ``generate()`` calls of a trimmed draft run the static / captured path
(:mod:`~hf_vocabtrim.model.static_drafter`), and the rule that this path may only make a round faster.

transformers runs an ``assistant_model`` through its own eager ``generate()`` loop every round and never compiles
it. On a GPU that loop is bound by Python and kernel launches (a 0.5B draft step: 16 ms eager, 2.9 ms as one CUDA
graph), so the draft's LM head, and trimming it, hardly show. A :class:`StaticDrafter` runs the round over a static
KV cache it owns, as CUDA-graph replays, while ``target.generate(assistant_model=draft)`` stays the user's call.

``config.fast_path``: ``"auto"`` captures on a CUDA device, ``"static"`` runs the same path without capture on any
device (what the CPU tests run). Where it does not apply (batch > 1, embeddings as inputs, a confidence threshold,
an attention kernel or cache it cannot capture...) the eager ``generate()`` runs and the reason is logged once. Any
exception inside the path turns it off for that model and device (one warning) and the same call is answered by the
eager path; a draft's drafter is held weakly, so deleting the draft frees its cache and graphs.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from transformers.cache_utils import get_layer_types_and_kwargs
from transformers.utils import logging

from .static_drafter import CacheHandle, ProcessorError, StaticDrafter, key_of

logger = logging.get_logger(__name__)

# arguments the candidate generator passes to the assistant's generate(); anything else takes the eager path
_HANDLED = {"input_ids", "attention_mask", "position_ids", "logits_to_keep", "cache", "use_cache"}
_HANDLED |= {"min_new_tokens", "max_new_tokens", "generation_config", "logits_processor"}
# one drafter per model (for its current device); the drafter holds its model weakly, so `del model` frees both
_DRAFTERS: weakref.WeakKeyDictionary[Any, StaticDrafter] = weakref.WeakKeyDictionary()
# why the static / captured path was turned off, per model and (device, dtype, capture)
_DISABLED: weakref.WeakKeyDictionary[Any, dict[tuple, str]] = weakref.WeakKeyDictionary()
_REGISTRY_LOCK = threading.Lock()


def generate(model: Any, eager_generate: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """One ``generate()`` call of a trimmed draft: the static/captured path where it applies, else ``eager_generate``
    (transformers' own), to which a cache handle of this path is never passed.

    The static / captured path may only make a round faster: any ``Exception`` inside it turns it off for this model
    and device (one warning with the reason) and the same call is answered by the eager path. An error raised by a
    logits processor goes to the eager path too, where a processor that fails there as well (the user's own) raises
    as it would without this library."""
    drafter = _drafter(model)
    reason = None if drafter is None else _unsupported_call(model, args, kwargs)
    if drafter is not None and reason is None:
        if not drafter.lock.acquire(blocking=False):  # another thread is inside this drafter
            reason = "another generation is running on this draft's static cache"
        else:
            try:
                output = drafter.generate(**kwargs)
            except ProcessorError as err:  # the eager path answers; if it succeeds, the failure was this path's
                output = _eager(eager_generate, args, kwargs)
                _disable(model, drafter, f"a logits processor failed on the static path only ({err.__cause__!r})")
                return output
            except Exception as err:
                _disable(model, drafter, f"{type(err).__name__}: {err}")
                return _eager(eager_generate, args, kwargs)
            finally:
                drafter.lock.release()
            if output is not None:
                return output
            reason = drafter.refusal
    if reason and getattr(kwargs.get("generation_config"), "is_assistant", False):
        logger.warning_once(f"TrimmedDraftModel fast_path: {reason}; running the eager path.")
    return _eager(eager_generate, args, kwargs)


def _eager(eager_generate: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    if isinstance(kwargs.get("cache"), CacheHandle):
        kwargs = {**kwargs, "cache": None}  # the eager path starts its own cache (prefill once)
    return eager_generate(*args, **kwargs)


def _disable(model: Any, drafter: StaticDrafter, reason: str) -> None:
    """Turn the static / captured path off for ``model`` on the drafter's device, free its cache and graphs, warn."""
    with _REGISTRY_LOCK:
        _DISABLED.setdefault(model, {})[drafter.key] = reason
        if _DRAFTERS.get(model) is drafter:
            del _DRAFTERS[model]
    drafter.release()
    logger.warning(
        f"TrimmedDraftModel fast_path: turned off for this draft on {drafter.device} after an error ({reason}); "
        "this call and the next ones run the eager path."
    )


def disabled_reason(model: Any) -> str | None:
    """Why the static / captured path was turned off for ``model`` on its current device (None if it was not)."""
    return _DISABLED.get(model, {}).get(key_of(model, _capture_of(model)))


def mode(model: Any) -> str:
    """``"captured"``, ``"static"`` or ``"eager"``: what an assistant call of ``model`` runs on its current device."""
    setting = getattr(model.config, "fast_path", "auto")
    if setting == "eager" or unsupported_model(model) or disabled_reason(model):
        return "eager"
    if model.device.type == "cuda":
        drafter = _DRAFTERS.get(model)
        if drafter is not None and drafter.matches(model, _capture_of(model)) and drafter.capture is None:
            return "static"  # capture was turned off by its first-use check
        return "captured" if setting == "auto" else "static"
    return "static" if setting == "static" else "eager"


def _rope_settings(config: Any) -> list[dict[str, Any]]:
    """Every RoPE setting of ``config``: one dict, or one per layer type (Gemma 3's ``rope_parameters``)."""
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if not isinstance(rope, dict):
        return []
    nested = [value for value in rope.values() if isinstance(value, dict)]
    return nested if nested and len(nested) == len(rope) else [rope]


def unsupported_model(model: Any) -> str | None:
    """Why ``model`` cannot run the static/captured path at all (None when it can)."""
    config = model.config.get_text_config(decoder=True)
    attention = getattr(model.draft.config, "_attn_implementation", None)
    if attention not in ("sdpa", "eager"):
        return f"attention {attention!r} synchronises with the host (use attn_implementation='sdpa')"
    for rope in _rope_settings(config):
        kind = rope.get("rope_type", rope.get("type"))
        if kind in ("dynamic", "longrope"):
            return f"{kind} RoPE changes with the sequence length (it reads the longest position on the host)"
    layer_types, _ = get_layer_types_and_kwargs(config)
    if not set(layer_types) <= {"full_attention", "sliding_attention"}:
        return f"a static cache of layer types {sorted(set(layer_types))} is not supported"
    if len({str(device) for device in getattr(model, "hf_device_map", {}).values()}) > 1:
        return "the draft is dispatched over several devices"
    if model.training:
        return "the draft is in training mode"
    return None


def _capture_of(model: Any) -> str | None:
    return "cuda" if model.device.type == "cuda" and getattr(model.config, "fast_path", "auto") == "auto" else None


def _drafter(model: Any) -> StaticDrafter | None:
    """The drafter of ``model`` on its current device (made and checked once), or None for the eager path."""
    setting = getattr(model.config, "fast_path", "auto")
    on_cuda = model.device.type == "cuda"
    if setting == "eager" or (setting == "auto" and not on_cuda):
        if setting != "eager":
            logger.info_once(f"TrimmedDraftModel fast_path='auto' captures on CUDA only (device {model.device}).")
        return None
    capture = _capture_of(model)
    with _REGISTRY_LOCK:
        drafter = _DRAFTERS.get(model)
        if drafter is not None and drafter.matches(model, capture):
            return drafter
        reason = _DISABLED.get(model, {}).get(key_of(model, capture)) or unsupported_model(model)
        if reason:
            logger.warning_once(f"TrimmedDraftModel fast_path: {reason}; the eager path runs.")
            return None
        if drafter is not None:
            drafter.release()
        drafter = _DRAFTERS[model] = StaticDrafter(model, capture)
    return drafter


def attach(model: Any, drafter: StaticDrafter) -> None:
    """Use ``drafter`` for ``model``'s assistant calls (tests attach one with the CPU twin of capture)."""
    with _REGISTRY_LOCK:
        _DISABLED.pop(model, None)
        _DRAFTERS[model] = drafter


def drafter_of(model: Any) -> StaticDrafter | None:
    """The drafter ``model``'s assistant calls use now, if any (for tests and benchmarks)."""
    return _DRAFTERS.get(model)


def _unsupported_call(model: Any, args: tuple, kwargs: dict[str, Any]) -> str | None:
    """Why this ``generate()`` call takes the eager path (None when the static/captured path can run it)."""
    config = kwargs.get("generation_config")
    if args or config is None or not getattr(config, "is_assistant", False):
        return "not an assistant_model call"
    extra = sorted(
        key for key, value in kwargs.items() if key not in _HANDLED and value is not None and value is not False
    )
    if extra:
        return f"unsupported generate() arguments {extra}"
    input_ids = kwargs.get("input_ids")
    if input_ids is None or input_ids.ndim != 2 or input_ids.shape[0] != 1:
        return "only batch 1 with input_ids is supported"
    beams: Any = getattr(config, "num_beams", None)
    threshold: Any = getattr(config, "assistant_confidence_threshold", None)
    if beams not in (None, 1) or threshold:
        return "beam search or an assistant confidence threshold (it needs a host sync per token)"
    if any(getattr(config, name, False) for name in ("output_attentions", "output_hidden_states", "output_logits")):
        return "attentions, hidden states or raw logits requested"
    return None


__all__ = [
    "CacheHandle",
    "ProcessorError",
    "StaticDrafter",
    "attach",
    "disabled_reason",
    "drafter_of",
    "generate",
    "mode",
]
