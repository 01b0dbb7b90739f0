# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Captured drafting: a trimmed draft's proposals over a static KV cache it owns, replayed as CUDA graphs on a GPU.

transformers runs an ``assistant_model`` through its own eager ``generate()`` loop every round and never compiles
it. On a GPU that loop is bound by Python and kernel launches (a 0.5B draft step: 16 ms eager, 2.9 ms as one CUDA
graph), so the draft's LM head, and trimming it, hardly show. :class:`StaticDrafter` runs the round its own way
while ``target.generate(assistant_model=draft)`` stays the user's call:

- one static cache (every layer a ``StaticLayer`` holding every position; sliding-window layers get their window
  from transformers' sliding-window attention mask) and, on the host, the ids it holds;
- each call continues from the longest common prefix of those ids and the ``input_ids`` it is given: rejected
  proposals are rolled back exactly (the cache position is cropped), and the 1-2 new ids of a round go through
  captured steps; a new prompt is prefilled over the same cache;
- each step (forward, context slots, scatter of the scores to V) is one graph replay; the generation's own logits
  processors and greedy or sampled selection follow, as in transformers, and the verifier gets the same V-wide
  scores (lossless); one host synchronisation per call (reading the proposals), none inside a step.

``config.fast_path``: ``"auto"`` captures on a CUDA device, ``"static"`` runs the same path without capture on any
device (what the CPU tests run). Where it does not apply (batch > 1, embeddings as inputs, a confidence threshold,
an attention kernel or cache it cannot capture...) the eager ``generate()`` runs and the reason is logged once. The
module is long because the dispatch, the drafter and its capture belong together, apart from the modeling file that
travels with checkpoints (the readable eager model).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationMixin, StaticCache
from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer, get_layer_types_and_kwargs
from transformers.generation import LogitsProcessorList
from transformers.generation.utils import GenerateDecoderOnlyOutput
from transformers.utils import logging

logger = logging.get_logger(__name__)

CAPTURED_LENGTHS = (1, 2)  # feeds of this many ids replay a graph (the 1-2 new ids of a round, then each proposal)
_MIN_CAPACITY = 256
# arguments the candidate generator passes to the assistant's generate(); anything else takes the eager path
_HANDLED = {"input_ids", "attention_mask", "position_ids", "logits_to_keep", "cache", "use_cache"}
_HANDLED |= {"min_new_tokens", "max_new_tokens", "generation_config", "logits_processor"}
_DRAFTERS: weakref.WeakKeyDictionary[Any, StaticDrafter] = weakref.WeakKeyDictionary()


def generate(model: Any, eager_generate: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """One ``generate()`` call of a trimmed draft: the static/captured path where it applies, else ``eager_generate``
    (transformers' own), to which a cache handle of this path is never passed."""
    drafter = _drafter(model)
    reason = None if drafter is None else _unsupported_call(model, args, kwargs)
    if drafter is not None and reason is None:
        output = drafter.generate(**kwargs)
        if output is not None:
            return output
        reason = drafter.refusal
    if reason and getattr(kwargs.get("generation_config"), "is_assistant", False):
        logger.warning_once(f"TrimmedDraftModel fast_path: {reason}; running the eager path.")
    if isinstance(kwargs.get("cache"), CacheHandle):
        kwargs = {**kwargs, "cache": None}  # the eager path starts its own cache (prefill once)
    return eager_generate(*args, **kwargs)


def mode(model: Any) -> str:
    """``"captured"``, ``"static"`` or ``"eager"``: what an assistant call of ``model`` runs on its current device."""
    setting = getattr(model.config, "fast_path", "auto")
    if setting == "eager" or unsupported_model(model):
        return "eager"
    if model.device.type == "cuda":
        return "captured" if setting == "auto" else "static"
    return "static" if setting == "static" else "eager"


def unsupported_model(model: Any) -> str | None:
    """Why ``model`` cannot run the static/captured path at all (None when it can)."""
    config = model.config.get_text_config(decoder=True)
    attention = getattr(model.draft.config, "_attn_implementation", None)
    if attention not in ("sdpa", "eager"):
        return f"attention {attention!r} synchronises with the host (use attn_implementation='sdpa')"
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    if rope.get("rope_type", rope.get("type")) in ("dynamic", "longrope"):
        return f"{rope.get('rope_type', rope.get('type'))} RoPE changes with the sequence length"
    layer_types, _ = get_layer_types_and_kwargs(config)
    if not set(layer_types) <= {"full_attention", "sliding_attention"}:
        return f"a static cache of layer types {sorted(set(layer_types))} is not supported"
    if len({str(device) for device in getattr(model, "hf_device_map", {}).values()}) > 1:
        return "the draft is dispatched over several devices"
    if model.training:
        return "the draft is in training mode"
    return None


def _drafter(model: Any) -> StaticDrafter | None:
    """The drafter of ``model`` on its current device (made and checked once), or None for the eager path."""
    setting = getattr(model.config, "fast_path", "auto")
    on_cuda = model.device.type == "cuda"
    if setting == "eager" or (setting == "auto" and not on_cuda):
        if setting != "eager":
            logger.info_once(f"TrimmedDraftModel fast_path='auto' captures on CUDA only (device {model.device}).")
        return None
    capture = "cuda" if on_cuda and setting == "auto" else None
    drafter = _DRAFTERS.get(model)
    if drafter is not None and drafter.matches(model, capture):
        return drafter
    reason = unsupported_model(model)
    if reason:
        logger.warning_once(f"TrimmedDraftModel fast_path: {reason}; the eager path runs.")
        return None
    drafter = _DRAFTERS[model] = StaticDrafter(model, capture)
    return drafter


def attach(model: Any, drafter: StaticDrafter) -> None:
    """Use ``drafter`` for ``model``'s assistant calls (tests attach one with the CPU twin of capture)."""
    _DRAFTERS[model] = drafter


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


class CacheHandle:
    """What the static path returns as ``.cache``: transformers' candidate generator crops it and passes it back;
    the :class:`StaticDrafter` keeps the real cache and rolls it back itself from the longest common prefix."""

    def __init__(self, drafter: StaticDrafter) -> None:
        self.drafter = drafter

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return len(self.drafter.ids)

    def crop(self, max_length: int) -> None:
        """Nothing to do: the next call finds where the sequence diverged."""


@dataclass
class _Step:
    """A static step for inputs of one length: its input buffer, output buffer (V-wide float32 scores) and replay."""

    ids: torch.Tensor
    scores: torch.Tensor
    replay: Callable[[], Any]


@dataclass
class _Processing:
    """The processors and selection of one generation config (rebuilt when the config or its inputs change)."""

    key: tuple
    config: Any
    processors: LogitsProcessorList
    do_sample: bool
    eos: set[int]


class StaticDrafter:
    """Proposals of one trimmed draft over a static KV cache it owns (see the module docstring).

    Args:
        model: the :class:`~hf_vocabtrim.TrimmedDraftModel`.
        capture: ``"cuda"`` (CUDA graphs), ``"twin"`` (the CPU stand-in: the same warm-up, rewind and static
            buffers, replay = a call) or None (static steps run as they are).
    """

    def __init__(self, model: Any, capture: str | None = None) -> None:
        if capture not in (None, "cuda", "twin"):
            raise ValueError(f"capture must be 'cuda', 'twin' or None, got {capture!r}.")
        self.model = model
        self.capture = capture
        self.device, self.dtype = model.device, model.dtype
        self.cache: Any = None
        self.capacity = 0
        self.ids: list[int] = []  # the ids whose keys and values the cache holds, in order
        self.steps: dict[int, _Step] = {}
        self.pool: Any = None
        self.refusal: str | None = None  # why the last call was handed to the eager path
        self._last_input: list[int] = []
        self._processing: _Processing | None = None
        self._handle = CacheHandle(self)

    def matches(self, model: Any, capture: str | None) -> bool:
        """Still right for ``model`` (same device and dtype, same capture, or the attached CPU twin of capture)."""
        same = model is self.model and (model.device, model.dtype) == (self.device, self.dtype)
        return same and self.capture in (capture, "twin")

    # ------------------------------------------------------------------------------------------- the cache
    def reserve(self, length: int) -> None:
        """Make room for ``length`` positions: a new, larger cache (and new graphs) when needed."""
        if length <= self.capacity:
            return
        capacity = max(_MIN_CAPACITY, 2 * self.capacity, length)
        capacity = -(-capacity // _MIN_CAPACITY) * _MIN_CAPACITY
        cache = StaticCache(config=self.model.config.get_text_config(decoder=True), max_cache_len=capacity)
        if not all(isinstance(layer, (StaticLayer, StaticSlidingWindowLayer)) for layer in cache.layers):
            raise ValueError(f"unsupported static cache layers {[type(layer).__name__ for layer in cache.layers]}")
        # every layer keeps every position: sliding-window layers get their window from the attention mask
        # (transformers' sliding-window mask over absolute positions), not from a rolling buffer
        cache.layers = [StaticLayer(max_cache_len=capacity) for _ in cache.layers]
        self.cache, self.capacity, self.ids, self.steps, self.pool = cache, capacity, [], {}, None

    def _rewind(self, length: int) -> None:
        """Back to the first ``length`` ids (positions beyond are masked and overwritten later)."""
        if length < len(self.ids):
            self.cache.crop(-(len(self.ids) - length))
            del self.ids[length:]

    # ------------------------------------------------------------------------------------------- steps
    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        """One static step: the draft over ``ids`` (1, T) with the static cache, scores of the last position scattered
        to V in float32 (what transformers' processors read). Static shapes, no host synchronisation."""
        logits = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return self.model.to_full_vocab(logits.float())

    def _step(self, length: int) -> _Step:
        """The captured step for feeds of ``length`` ids, built on first use at the current position: two warm-up
        runs outside the graph (lazy allocations, library handles), each rewound, then the capture, which records the
        kernels without running them (the cache position does not move)."""
        step = self.steps.get(length)
        if step is not None:
            return step
        ids = torch.zeros(1, length, dtype=torch.long, device=self.device)
        on_cuda = self.capture == "cuda"
        stream = torch.cuda.Stream(self.device) if on_cuda else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            for _ in range(2):
                scores = self._forward(ids)
                self.cache.crop(-length)
        if stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                scores = self._forward(ids)
            self.pool = graph.pool()
            step = _Step(ids, scores, graph.replay)
        else:  # the CPU twin: the same buffers and warm-up; a replay runs the step into the output buffer
            out = scores.clone()
            step = _Step(ids, out, lambda: out.copy_(self._forward(ids)))
        self.steps[length] = step
        return step

    def _feed(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed ``ids`` (1, T) at the current position; the V-wide scores of the last one."""
        if self.capture is None or ids.shape[1] not in CAPTURED_LENGTHS:
            return self._forward(ids)  # uncaptured: the static path on any device, or a prompt's prefill
        step = self._step(ids.shape[1])
        step.ids.copy_(ids)
        step.replay()
        return step.scores

    # ------------------------------------------------------------------------------------------- a round
    def _prepare(self, config: Any, processors: Any, input_length: int, min_new: int, max_new: int) -> _Processing:
        key = (id(config), id(processors), min_new, input_length if min_new else None)
        cached = self._processing
        if cached is not None and cached.key == key and cached.config is config:
            return cached
        model = self.model
        prepared, _ = model._prepare_generation_config(config)
        prepared.min_new_tokens, prepared.max_new_tokens = min_new, max_new
        model._prepare_special_tokens(prepared, True, device=self.device)
        built = GenerationMixin._get_logits_processor(  # transformers' own list, without the k -> V scatter
            model,
            generation_config=prepared,
            input_ids_seq_length=input_length,
            encoder_input_ids=None,
            logits_processor=LogitsProcessorList(processors or []),
            device=self.device,
            model_kwargs={},
        )
        eos = prepared._eos_token_tensor
        eos_ids = set() if eos is None else {int(i) for i in eos.reshape(-1).tolist()}
        self._processing = _Processing(key, config, built, bool(prepared.do_sample), eos_ids)
        return self._processing

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        generation_config: Any,
        logits_processor: Any = None,
        max_new_tokens: int = 1,
        min_new_tokens: int = 0,
        attention_mask: torch.Tensor | None = None,
        cache: Any = None,
        **_: Any,
    ) -> GenerateDecoderOnlyOutput | None:
        """One assistant round: the ``max_new_tokens`` proposals after ``input_ids`` (1, n), with their V-wide scores,
        as transformers' ``generate()`` returns them; None (``refusal`` says why) where this path cannot run it."""
        self.refusal = None
        length = input_ids.shape[1]
        max_new = max(int(max_new_tokens or 1), 1)
        if cache is self._handle and len(self._last_input) <= length:  # a continuation: only the tail is new
            host = self._last_input + input_ids[0, len(self._last_input) :].tolist()
        else:
            if attention_mask is not None and not bool(attention_mask.all()):
                self.refusal = "padding in the attention mask"
                return None
            host = input_ids[0].tolist()
        self.reserve(length + max_new)
        self._last_input = host
        common = 0
        for cached, new in zip(self.ids, host):
            if cached != new:
                break
            common += 1
        self._rewind(min(common, length - 1))
        processing = self._prepare(generation_config, logits_processor, length, int(min_new_tokens or 0), max_new)

        scores = self._feed(input_ids[:, len(self.ids) :])
        self.ids.extend(host[len(self.ids) :])
        sequence, tokens, outputs = input_ids, [], []
        for index in range(max_new):
            scores = scores.clone()  # the step's output buffer is overwritten by the next replay
            if processing.processors:
                scores = processing.processors(sequence, scores)  # type: ignore[arg-type]
            if processing.do_sample:
                token = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1)
            else:
                token = scores.argmax(dim=-1, keepdim=True)
            outputs.append(scores)
            tokens.append(token)
            if index + 1 < max_new:
                if processing.processors:
                    sequence = torch.cat([sequence, token], dim=-1)
                scores = self._feed(token)
        proposed = torch.cat(tokens, dim=-1)
        new = proposed[0].tolist()  # the round's one host synchronisation
        self.ids.extend(new[:-1])  # every proposal but the last was fed
        stop = next((i + 1 for i, token_id in enumerate(new) if token_id in processing.eos), len(new))
        return GenerateDecoderOnlyOutput(
            sequences=torch.cat([input_ids, proposed[:, :stop]], dim=-1),  # type: ignore[arg-type]
            scores=tuple(outputs[:stop]),  # type: ignore[arg-type]
            cache=self._handle,  # type: ignore[arg-type]
        )
