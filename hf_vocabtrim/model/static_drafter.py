# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Captured drafting, the drafter: a trimmed draft's proposals over a static KV cache it owns, replayed as CUDA graphs
on a GPU (:mod:`~hf_vocabtrim.model.fast_path` decides which calls come here).

- one static cache (every layer a ``StaticLayer`` holding every position; sliding-window layers get their window
  from transformers' sliding-window attention mask) and, on the host, the ids it holds;
- each call continues from the longest common prefix of those ids and the ``input_ids`` it is given: rejected
  proposals are rolled back exactly (the cache position set back), and the 1-2 new ids of a round go through
  captured steps; a new prompt is prefilled over the same cache;
- each step (forward, context slots, scatter of the scores to V) is one graph replay, checked once against the same
  step run uncaptured; the generation's own logits processors and greedy or sampled selection follow, as in
  transformers, and the verifier gets the same V-wide scores (lossless); one host synchronisation per call (reading
  the proposals), none inside a step.

It is long because the drafter's cache, steps, capture and round belong together.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import GenerationMixin, StaticCache
from transformers.cache_utils import StaticLayer, StaticSlidingWindowLayer
from transformers.generation import LogitsProcessorList
from transformers.generation.utils import GenerateDecoderOnlyOutput
from transformers.utils import logging

logger = logging.get_logger(__name__)

CAPTURED_LENGTHS = (1, 2)  # feeds of this many ids replay a graph (the 1-2 new ids of a round, then each proposal)
_MIN_CAPACITY = 256


def key_of(model: Any, capture: str | None) -> tuple:
    """What a drafter is made for: the model's device and dtype, and the capture."""
    return (str(model.device), model.dtype, capture)


class ProcessorError(Exception):
    """A logits processor raised inside the static path (the error is its ``__cause__``)."""


class CacheHandle:
    """What the static path returns as ``.cache``: transformers' candidate generator crops it and passes it back. It
    records the ids of its own generation (the input of the round that returned it), so the next round feeds only
    the new tail; the :class:`StaticDrafter` keeps the real cache and rolls it back itself from the longest common
    prefix. A handle that is no longer the drafter's latest (another generation started on the same draft since)
    sends its generation to the eager path."""

    def __init__(self, drafter: StaticDrafter, ids: list[int], length: int) -> None:
        self.drafter = drafter
        self.ids = ids
        self.length = length

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length

    def crop(self, max_length: int) -> None:
        """Nothing to do: the next call finds where the sequence diverged."""


@dataclass
class _Step:
    """A static step for inputs of one length: its input buffer, output buffer (V-wide float32 scores), replay, and
    whether its first replay was checked against the same step run uncaptured."""

    ids: torch.Tensor
    scores: torch.Tensor
    replay: Callable[[], Any]
    checked: bool = False


@dataclass
class _Processing:
    """The processors and selection of one generation config (rebuilt when the config or its inputs change)."""

    key: tuple
    config: Any
    given: Any  # the processors passed in (held, so that their id cannot be reused while this is cached)
    processors: LogitsProcessorList
    do_sample: bool
    eos: set[int]


# relative tolerance of the first-use check, by the draft's dtype (scaled by the largest finite score)
_TOLERANCE = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}


class StaticDrafter:
    """Proposals of one trimmed draft over a static KV cache it owns (see the module docstring).

    Args:
        model: the :class:`~hf_vocabtrim.TrimmedDraftModel` (held weakly: deleting the model frees the drafter).
        capture: ``"cuda"`` (CUDA graphs), ``"twin"`` (the CPU stand-in: the same warm-up, rewind, static buffers
            and first-use check, replay = a call) or None (static steps run as they are).

    State the next call can trust whatever ended the last one (an exception, a KeyboardInterrupt): ``ids`` holds only
    ids whose keys and values were fully written, and a round that did not finish leaves ``_dirty`` set, so the next
    one sets every layer's cache position to ``len(ids)`` (absolute, not a relative crop). All work on the cache runs
    under ``torch.inference_mode()``, whatever the caller's grad mode; what it returns is cloned outside it.
    """

    def __init__(self, model: Any, capture: str | None = None) -> None:
        if capture not in (None, "cuda", "twin"):
            raise ValueError(f"capture must be 'cuda', 'twin' or None, got {capture!r}.")
        self._model = weakref.ref(model)
        self.capture = capture
        self.requested = capture  # what was asked for (capture may be turned off by the first-use check)
        self.device, self.dtype = model.device, model.dtype
        self.key = key_of(model, capture if capture != "twin" else None)
        self.cache: Any = None
        self.capacity = 0
        self.ids: list[int] = []  # the ids whose keys and values the cache holds, in order
        self.position = 0  # the cache position the next feed writes at (len(ids) between rounds)
        self.steps: dict[int, _Step] = {}
        self.pool: Any = None
        self.stream: Any = torch.cuda.Stream(self.device) if capture == "cuda" else None
        self.lock = threading.Lock()
        self.refusal: str | None = None  # why the last call was handed to the eager path
        self._dirty = False
        self._owner: Callable[[], CacheHandle | None] = lambda: None
        self._processing: _Processing | None = None

    @property
    def model(self) -> Any:
        model = self._model()
        if model is None:
            raise RuntimeError("the draft of this StaticDrafter was freed.")
        return model

    def matches(self, model: Any, capture: str | None) -> bool:
        """Still right for ``model`` (same device and dtype, same capture, or the attached CPU twin of capture)."""
        same = model is self._model() and (model.device, model.dtype) == (self.device, self.dtype)  # type: ignore[union-attr]
        return same and self.requested in (capture, "twin")

    def release(self) -> None:
        """Free the cache, the graphs and their memory pool (the drafter rebuilds them if used again)."""
        self.cache, self.capacity, self.ids, self.position, self.steps, self.pool = None, 0, [], 0, {}, None
        self._processing = None

    def _device(self) -> Any:
        """The drafter's CUDA device made current (warm-up, capture and replay), a no-op elsewhere."""
        return torch.cuda.device(self.device) if self.capture == "cuda" else contextlib.nullcontext()

    # ------------------------------------------------------------------------------------------- the cache
    @torch.inference_mode()
    def reserve(self, length: int) -> None:
        """Make room for ``length`` positions: a new, larger cache (and new graphs) when needed."""
        if length <= self.capacity:
            return
        capacity = max(_MIN_CAPACITY, 2 * self.capacity, length)
        capacity = -(-capacity // _MIN_CAPACITY) * _MIN_CAPACITY
        self.release()
        cache = StaticCache(config=self.model.config.get_text_config(decoder=True), max_cache_len=capacity)
        if not all(isinstance(layer, (StaticLayer, StaticSlidingWindowLayer)) for layer in cache.layers):
            raise ValueError(f"unsupported static cache layers {[type(layer).__name__ for layer in cache.layers]}")
        # every layer keeps every position: sliding-window layers get their window from the attention mask
        # (transformers' sliding-window mask over absolute positions), not from a rolling buffer
        cache.layers = [StaticLayer(max_cache_len=capacity) for _ in cache.layers]
        self.cache, self.capacity, self._dirty = cache, capacity, False

    @torch.inference_mode()
    def _set_position(self, position: int) -> None:
        """Every layer's write position set to ``position`` (absolute: right whatever a failed feed left)."""
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(position)
        self.position = position

    def _rewind(self, length: int) -> None:
        """Back to the first ``length`` ids (positions beyond are masked and overwritten later)."""
        if self._dirty or length != self.position:
            self._set_position(length)
        del self.ids[length:]
        self._dirty = False

    # ------------------------------------------------------------------------------------------- steps
    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        """One static step: the draft over ``ids`` (1, T) with the static cache, scores of the last position scattered
        to V in float32 (what transformers' processors read). Static shapes, no host synchronisation."""
        logits = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        return self.model.to_full_vocab(logits.float())

    def _step(self, length: int) -> _Step:
        """The captured step for feeds of ``length`` ids, built on first use at the current position: two warm-up
        runs outside the graph (lazy allocations, library handles), each rewound, then the capture on this drafter's
        own stream and device, which records the kernels without running them (the cache position does not move)."""
        step = self.steps.get(length)
        if step is not None:
            return step
        ids = torch.zeros(1, length, dtype=torch.long, device=self.device)
        start = self.position
        if self.capture == "cuda":
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.stream):
                for _ in range(2):
                    self._forward(ids)
                    self._set_position(start)
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, stream=self.stream, capture_error_mode="thread_local"):
                scores = self._forward(ids)
            self.pool = graph.pool()
            step = _Step(ids, scores, graph.replay)
        else:  # the CPU twin: the same buffers and warm-up; a replay runs the step into the output buffer
            for _ in range(2):
                scores = self._forward(ids)
                self._set_position(start)
            out = scores.clone()
            step = _Step(ids, out, lambda: out.copy_(self._forward(ids)))
        self.steps[length] = step
        return step

    @torch.inference_mode()
    def _feed(self, ids: torch.Tensor) -> torch.Tensor:
        """Feed ``ids`` (1, T) at the current position; the V-wide scores of the last one."""
        start, length = self.position, ids.shape[1]
        with self._device():
            if self.capture is None or length not in CAPTURED_LENGTHS:
                scores = self._forward(ids)  # uncaptured: the static path on any device, or a prompt's prefill
            else:
                step = self._step(length)
                step.ids.copy_(ids)
                step.replay()
                scores = step.scores if step.checked else self._check(step, ids, start)
        self.position = start + length
        return scores

    def _check(self, step: _Step, ids: torch.Tensor, start: int) -> torch.Tensor:
        """The first replay of a captured step against the same step run uncaptured (same inputs, same cache
        position): a difference beyond the dtype's tolerance turns capture off for this drafter (static path)."""
        captured = step.scores.clone()
        self._set_position(start)
        reference = self._forward(ids)
        finite = torch.isfinite(reference)
        scale = float(reference[finite].abs().max()) if bool(finite.any()) else 1.0
        tolerance = _TOLERANCE.get(self.dtype, 1e-4) * max(scale, 1.0)
        if torch.allclose(captured, reference, rtol=0.0, atol=tolerance):
            step.checked = True
        else:
            difference = (captured - reference).nan_to_num(posinf=float("inf"), neginf=float("inf")).abs().max()
            self.capture, self.steps, self.pool = None, {}, None
            logger.warning(
                f"TrimmedDraftModel fast_path: the first replay of a captured step differs from the same step run "
                f"uncaptured (max |difference| {float(difference):.3g} > {tolerance:.3g}); capture is off for this "
                "draft, its static path runs uncaptured."
            )
        return reference

    # ------------------------------------------------------------------------------------------- a round
    def _prepare(self, config: Any, processors: Any, input_length: int, min_new: int, max_new: int) -> _Processing:
        key = (id(config), id(processors), min_new, input_length if min_new else None)
        cached = self._processing
        if cached is not None and cached.key == key and cached.config is config and cached.given is processors:
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
        self._processing = _Processing(key, config, processors, built, bool(prepared.do_sample), eos_ids)
        return self._processing

    def _history(self, input_ids: torch.Tensor, attention_mask: Any, cache: Any) -> list[int] | None:
        """The host ids of this call's sequence (only the new tail read from the device for a continuation of this
        drafter's latest generation); None, with ``refusal`` set, where this path cannot run the call."""
        length = input_ids.shape[1]
        if isinstance(cache, CacheHandle) and cache.drafter is self:
            if cache is not self._owner():
                self.refusal = "another generation started on this draft since (its static cache holds that one)"
                return None
            if len(cache.ids) <= length:
                return cache.ids + input_ids[0, len(cache.ids) :].tolist()
        if attention_mask is not None and not bool(attention_mask.all()):
            self.refusal = "padding in the attention mask"
            return None
        return input_ids[0].tolist()

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
        host = self._history(input_ids, attention_mask, cache)
        if host is None:
            return None
        length = input_ids.shape[1]
        max_new = max(int(max_new_tokens or 1), 1)
        self.reserve(length + max_new)
        common = 0
        for cached, given in zip(self.ids, host):
            if cached != given:
                break
            common += 1
        self._rewind(min(common, length - 1))
        processing = self._prepare(generation_config, logits_processor, length, int(min_new_tokens or 0), max_new)

        self._dirty = True  # until the round ends normally: the next call then sets the cache position absolutely
        scores = self._feed(input_ids[:, len(self.ids) :])
        self.ids.extend(host[len(self.ids) :])
        sequence, tokens, outputs = input_ids, [], []
        with torch.no_grad():
            for index in range(max_new):
                scores = scores.clone()  # outside inference mode; the step's buffer is overwritten by the next replay
                if processing.processors:
                    try:
                        scores = processing.processors(sequence, scores)  # type: ignore[arg-type]
                    except Exception as err:
                        raise ProcessorError(str(err)) from err
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
            new: list[int] = proposed[0].tolist()  # the round's one host synchronisation
            self.ids.extend(new[:-1])  # every proposal but the last was fed
            self._dirty = False
            handle = CacheHandle(self, host, len(self.ids))
            self._owner = weakref.ref(handle)
            stop = next((i + 1 for i, token_id in enumerate(new) if token_id in processing.eos), len(new))
            return GenerateDecoderOnlyOutput(
                sequences=torch.cat([input_ids, proposed[:, :stop]], dim=-1),  # type: ignore[arg-type]
                scores=tuple(outputs[:stop]),  # type: ignore[arg-type]
                cache=handle,  # type: ignore[arg-type]
            )
