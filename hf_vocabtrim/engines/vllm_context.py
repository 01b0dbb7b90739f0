# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Each request's context ids inside vLLM's draft step, for per-request draft vocabularies (context tokens).

:class:`ContextIds` keeps one id per KV-cache slot, written in the draft's ``forward`` through its attention layers'
``slot_mapping`` (exactly where the KV cache is written). ``candidates`` gathers each request's ids through its own
block table up to its own length, so a request only ever sees its own blocks: no leak between requests;
prefix-cached blocks hold the same ids; chunked prefill and preemption rewrite slots as they rewrite KV. The ids are
deduplicated by a sort, kept and padding ids dropped, and compacted into a fixed number of candidate columns: static
shapes, no ``nonzero`` / ``unique``, no host synchronisation (vLLM may capture the step in CUDA graphs).

Imported by ``vllm_model.py`` only, when vLLM builds a draft (it imports vLLM).
"""

from __future__ import annotations

import os
from typing import Any

import torch
from vllm.forward_context import get_forward_context, is_forward_context_available

# candidate columns per request for context ids (distinct ids not in kept_ids); NanoSpec caps its per-request set at
# 3,072 ids. Past the cap the lowest ids are kept. Override with VOCABTRIM_CONTEXT_CAP.
CONTEXT_CAP = int(os.environ.get("VOCABTRIM_CONTEXT_CAP", "4096"))


class ContextIds:
    """One id per KV-cache slot, and each request's distinct context ids gathered through its block table."""

    def __init__(self, scorable: torch.Tensor, layer: str) -> None:
        self.scorable = scorable  # (V + 1,) bool: not kept, not padding; index V (the sentinel) False
        self.layer = layer  # a draft attention layer: its slot_mapping, metadata and KV cache
        self.by_slot: torch.Tensor | None = None  # (slots + 1,) int32, the last entry a dump for padding tokens
        self.block_size = 0  # tokens per block of the layer's KV cache (and of its metadata's block table)
        self.step: tuple[torch.Tensor, torch.Tensor] | None = None  # this step's (block_table, lengths)

    def record(self, input_ids: torch.Tensor, positions: torch.Tensor) -> bool:
        """Write this forward's ids at their slots and keep the step's block table and each request's length; False
        where the attention backend or cache layout is not one this class knows (context tokens then stay off)."""
        self.step = None
        if not is_forward_context_available():
            return True
        context = get_forward_context()
        slots, metadata = context.slot_mapping, context.attn_metadata
        if isinstance(slots, list) or isinstance(metadata, list):  # micro-batched: not supported
            return False
        if not isinstance(slots, dict) or self.layer not in slots or not isinstance(metadata, dict):
            return True  # a profiling run without KV cache
        meta = metadata.get(self.layer)
        if meta is None:
            return True
        table, starts = getattr(meta, "block_table", None), getattr(meta, "query_start_loc", None)
        if not isinstance(table, torch.Tensor) or not isinstance(starts, torch.Tensor) or positions.ndim != 1:
            return False
        if self.by_slot is None:
            layout = self._cache_layout(context)
            if layout is None:
                return False
            blocks, self.block_size = layout
            self.by_slot = torch.zeros(blocks * self.block_size + 1, dtype=torch.int32, device=input_ids.device)
        tokens = input_ids.shape[0]
        slot_mapping = slots[self.layer][:tokens]
        written = slot_mapping >= 0  # padding and rejected tokens have slot -1
        dump = self.by_slot.shape[0] - 1
        self.by_slot.index_copy_(0, torch.where(written, slot_mapping.long(), dump), input_ids.to(torch.int32))
        # each request's length: its last written position + 1. vLLM's seq_lens of a first draft pass also count the
        # previous round's rejected tokens, whose slots may never have been written by this request
        requests = starts.shape[0] - 1
        owner = torch.searchsorted(starts[1:].long(), torch.arange(tokens, device=starts.device), right=True)
        ends = torch.where(written, positions[:tokens].long() + 1, 0)
        lengths = torch.zeros(requests + 1, dtype=torch.long, device=ends.device)
        lengths.scatter_reduce_(0, owner.clamp_(max=requests), ends, reduce="amax")
        self.step = (table[:requests], lengths[:requests])
        return True

    def _cache_layout(self, context: Any) -> tuple[int, int] | None:
        """(blocks, tokens per block) of the draft layer's KV cache: ``[blocks, heads, block, 2 * head_dim]`` (CPU,
        Triton, FlashInfer) or ``[2, blocks, block, heads, head_dim]`` (FlashAttention); None for another layout."""
        layer = context.no_compile_layers.get(self.layer)
        cache = getattr(layer, "kv_cache", None)
        if isinstance(cache, list | tuple):
            cache = cache[0] if cache else None
        if not isinstance(cache, torch.Tensor) or cache.numel() == 0:
            return None
        dims = [int(d) for d in cache.shape]
        if len(dims) == 4:
            return dims[0], dims[2]
        if len(dims) == 5 and dims[0] == 2:
            return dims[1], dims[2]
        return None

    def candidates(self, rows: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(rows, C) distinct context ids of each request (sorted; the sentinel V where empty) and their mask."""
        if self.step is None or self.by_slot is None:
            return None
        table, seq_lens = self.step
        table, seq_lens = table[:rows].long(), seq_lens[:rows]
        length = table.shape[1] * self.block_size
        positions = torch.arange(length, device=table.device)
        slots = table[:, positions // self.block_size] * self.block_size + positions % self.block_size
        slots = slots.clamp_(0, self.by_slot.shape[0] - 2)
        ids = self.by_slot[slots].long()
        sentinel = self.scorable.shape[0] - 1
        ids = ids.clamp_(0, sentinel)
        keep = (positions[None, :] < seq_lens[:, None]) & self.scorable[ids]
        ids = torch.where(keep, ids, sentinel)
        ordered = ids.sort(dim=1).values
        first = torch.ones_like(ordered, dtype=torch.bool)
        first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        first &= ordered != sentinel
        width = min(CONTEXT_CAP, length)
        destination = torch.where(first, first.long().cumsum(1) - 1, width).clamp_(max=width)
        out = torch.full((rows, width + 1), sentinel, dtype=torch.long, device=ids.device)
        out.scatter_(1, destination, torch.where(first, ordered, sentinel))
        out = out[:, :width]
        return out, out != sentinel
