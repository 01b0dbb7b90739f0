# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""vLLM's model class for ``TrimmedDraftModel`` folders (served as ``method: "draft_model"`` drafts).

vLLM imports this module only when it builds such a draft (the plugin registers it as a ``"module:Class"`` string),
so it imports vLLM and torch at module level. The class builds vLLM's own model of the base draft (``text_config``:
Llama, Qwen2/3, Gemma, ...), puts a k-row ``ParallelLMHead`` in place of its V-row head and returns V-wide logits:
the kept rows' scores at ``kept_ids``, ``-inf`` elsewhere, so vLLM's proposer, rejection sampler and verification run
unchanged (greedy and sampled output stay the target's). The base model's logit scale and soft-capping apply.

Before anything is built, the folder is checked from its config and safetensors headers
(:func:`~hf_vocabtrim.model.folder_check.trimmed_folder_problems`): one ``ValueError`` line naming the folder, the
field and the fix. ``kept_ids`` is read from the folder at construction, so it is set under ``load_format="dummy"``.

Context tokens (a folder with ``context_tokens`` on, tensor parallel size 1): each request's draft also scores the
ids already in its own sequence (prompt and output so far), as ``generate()`` does; ``vllm_context.ContextIds`` finds
them per request, this class scores their rows beside the kept rows. The module is long because the class is one
unit (build and pre-flight, forward, logits and local argmax, weights), plus the few helpers only it uses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vllm import ModelRegistry
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead
from vllm.model_executor.models.utils import maybe_prefix

from ..model.folder_check import read_int_tensor, trimmed_folder_problems, weight_headers
from .vllm_context import ContextIds
from .vllm_plugin import ARCHITECTURE, warn_once


def base_architecture(text_config: Any) -> str:
    """The vLLM architecture name of the base draft: its config's ``architectures``, or transformers' causal-LM class
    for its ``model_type`` (configs built in memory have no ``architectures``)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = list(getattr(text_config, "architectures", None) or [])
    return names[0] if names else str(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(text_config.model_type, ""))


def _with_hf_config(vllm_config: Any, text_config: Any) -> Any:
    """A shallow copy of ``vllm_config`` whose model config describes the base draft (vLLM's Llama and Gemma classes
    read ``model_config.hf_config`` itself, not a nested text config)."""
    model_config = copy.copy(vllm_config.model_config)
    model_config.hf_config = text_config
    model_config.hf_text_config = text_config
    inner = copy.copy(vllm_config)
    inner.model_config = model_config
    return inner


def local_folder(model_config: Any) -> Path | None:
    """The draft's folder on this machine: the path vLLM was given, or its Hub snapshot already downloaded."""
    path = Path(str(model_config.model))
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        cached = snapshot_download(str(model_config.model), revision=getattr(model_config, "revision", None),
                                   local_files_only=True, allow_patterns=["*.json", "*.safetensors"])  # fmt: skip
        return Path(cached)
    except Exception:  # noqa: BLE001 - not downloaded yet: vLLM's own loader will say
        return None


def target_vocab_size(vllm_config: Any) -> int | None:
    """The target's vocabulary size, where vLLM's speculative config gives it."""
    try:
        return int(vllm_config.speculative_config.target_model_config.get_vocab_size())
    except Exception:  # noqa: BLE001 - no speculative config: the draft built on its own
        return None


def preflight(vllm_config: Any, k: int) -> torch.Tensor:
    """Check the folder before the base model is built (one ``ValueError`` line) and return its ``kept_ids``."""
    folder = local_folder(vllm_config.model_config)
    if folder is None:
        return torch.arange(k)  # a Hub id not yet downloaded; load_weights sets the real ids
    headers = weight_headers(folder)  # read once: the check and kept_ids below
    problems = trimmed_folder_problems(folder, target_vocab_size(vllm_config), headers)
    if problems:
        raise ValueError(f"hf-vocabtrim: {folder}: {problems[0]}" + (f" (+{len(problems) - 1} more: `vocabtrim "
                         f"check {folder}`)" if len(problems) > 1 else ""))  # fmt: skip
    file, entry = headers["kept_ids"]
    return torch.tensor(read_int_tensor(file, entry), dtype=torch.long)


class TrimmedDraftForVLLM(nn.Module):
    """vLLM's model of the base draft with a k-row LM head whose logits are scattered to the target's V (and, with
    context tokens, the rows of each request's own context ids scored beside the kept rows)."""

    kept_ids: torch.Tensor

    def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        if getattr(config, "model_type", None) != "trimmed_draft" or config.draft_vocab_size is None:
            raise ValueError(f"hf-vocabtrim: {ARCHITECTURE} needs a trimmed-draft config (model_type 'trimmed_draft').")
        k = int(config.draft_vocab_size)
        kept = preflight(vllm_config, k)  # before any weight is built or loaded
        text = config.get_text_config()
        name = base_architecture(text)
        base_class = ModelRegistry._try_load_model_cls(name) if name else None  # no public lookup by name exists
        if base_class is None:
            raise ValueError(
                f"hf-vocabtrim: vLLM has no model class for the base draft's architecture {name or text.model_type!r};"
                " serve the untrimmed draft, or trim a draft of an architecture vLLM supports."
            )
        self.base = base_class(vllm_config=_with_hf_config(vllm_config, text), prefix=prefix)
        hidden = int(text.hidden_size)
        self.vocab_size = int(text.vocab_size)
        old = self.base.logits_processor  # keep the architecture's logit scale and soft-capping
        self.scale, self.soft_cap = float(old.scale), old.soft_cap
        self.base.lm_head = ParallelLMHead(k, hidden, prefix=maybe_prefix(prefix, "lm_head"))
        self.base.logits_processor = LogitsProcessor(k, scale=old.scale, soft_cap=old.soft_cap)
        self.register_buffer("kept_ids", kept.clone(), persistent=False)
        self.context: ContextIds | None = None
        self.context_rows: str | None = None
        self.embedding: list[Any] = []  # the base's input embedding (a list: not registered as a second submodule)
        if config.context_tokens:
            self._init_context(vllm_config, config, hidden)

    def _init_context(self, vllm_config: Any, config: Any, hidden: int) -> None:
        """Context tokens where they can be served here (tensor parallel 1, a known draft attention layer), else one
        warning and the static kept set."""
        tp = int(getattr(vllm_config.parallel_config, "tensor_parallel_size", 1))
        layers = [n for n, m in self.named_modules() if type(m).__name__ in ("Attention", "StaticSinkAttention")]
        prefixed = [getattr(self.get_submodule(n), "layer_name", None) for n in layers]
        names = [n for n in prefixed if n]
        if tp != 1 or not names:
            why = f"tensor parallel size {tp}" if tp != 1 else "no attention layer found"
            warn_once("context", "hf-vocabtrim: context tokens are not served here (%s); the draft scores its "
                       "static kept set.", why)  # fmt: skip
            return
        embeddings = [m for n, m in self.base.named_modules() if n.endswith("embed_tokens")]
        if config.context_rows == "stored_head":
            self.register_buffer("context_head_weight", torch.zeros(self.vocab_size, hidden), persistent=False)
        elif not embeddings or not isinstance(getattr(embeddings[0], "weight", None), torch.Tensor):
            warn_once("context", "hf-vocabtrim: context tokens are not served here (no input embedding found for "
                       "the context rows); the draft scores its static kept set.")  # fmt: skip
            return
        self.embedding = embeddings[:1]
        self.context_rows = config.context_rows
        self.base_vocab_size = int(config.base_vocab_size or self.vocab_size)
        self.context = ContextIds(self._scorable(self.kept_ids), names[0])

    def _scorable(self, kept: torch.Tensor) -> torch.Tensor:
        """(V + 1,) bool: ids a context column may score: not kept, not a padding id; the sentinel V never."""
        scorable = torch.ones(self.vocab_size + 1, dtype=torch.bool, device=kept.device)
        scorable[kept] = False
        scorable[self.base_vocab_size :] = False
        return scorable

    def embed_input_ids(self, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.base.embed_input_ids(input_ids, *args, **kwargs)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        if self.context is not None:
            if self.context.scorable.device != positions.device:
                self.context.scorable = self.context.scorable.to(positions.device)
            if input_ids is None or not self.context.record(input_ids, positions):
                warn_once("context-backend", "hf-vocabtrim: this attention backend or KV-cache layout gives the "
                           "draft no block table; context tokens are off, the static kept set is served.")  # fmt: skip
                self.context = None
        return self.base(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)

    def _context_rows(self) -> torch.Tensor:
        if self.context_rows == "stored_head":
            return self.get_buffer("context_head_weight")
        return self.embedding[0].weight  # set wherever context rows come from the input embedding

    def _scores(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor | None, Any]:
        """The kept rows' (N, k) logits and, with context tokens, ((N, C) ids, (N, C) logits, -inf where masked)."""
        small = self.base.logits_processor(self.base.lm_head, hidden_states)
        if small is None or self.context is None:
            return small, None
        found = self.context.candidates(hidden_states.shape[0])
        if found is None:
            return small, None
        ids, valid = found
        rows = self._context_rows()
        sentinel = self.vocab_size
        gathered = rows[ids.clamp(max=sentinel - 1)].to(hidden_states.dtype)  # (N, C, hidden)
        scores = torch.einsum("nh,nch->nc", hidden_states, gathered)
        if self.soft_cap is not None:
            scores = torch.tanh(scores / self.soft_cap) * self.soft_cap
        if self.scale != 1.0:
            scores = scores * self.scale
        scores = scores.masked_fill(~valid, float("-inf")).to(small.dtype)
        return small, (ids, scores)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        """(N, V) logits: the kept rows' scores at ``kept_ids``, each request's context ids' scores at theirs,
        ``-inf`` elsewhere."""
        # the k-row head itself: some of vLLM's classes (Gemma 2, Command R) score with the input embedding
        small, context = self._scores(hidden_states)
        if small is None:  # not the rank that holds the logits
            return None
        full = small.new_full((small.shape[0], self.vocab_size), float("-inf"))
        full[:, self.kept_ids] = small
        if context is not None:
            ids, scores = context
            # distinct ids per row, none of them kept; empty columns (the sentinel V, score -inf) land on a kept id's
            # column, where the maximum leaves the kept score
            ids = torch.where(ids < self.vocab_size, ids, self.kept_ids[0])
            full.scatter_reduce_(1, ids, scores, reduce="amax")
        return full

    def get_top_tokens(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """vLLM's local-argmax reduction: the argmax id of :meth:`compute_logits` without V-wide logits (ties: the
        lowest id, as ``argmax`` over V)."""
        if self.context is None:
            index = self.base.logits_processor.get_top_tokens(self.base.lm_head, hidden_states)
            return self.kept_ids[index]
        small, context = self._scores(hidden_states)
        assert small is not None  # tensor parallel 1 with context tokens
        best, index = small.max(dim=-1)
        kept = self.kept_ids[index]
        if context is None:
            return kept
        ids, scores = context
        best_context, where = scores.max(dim=-1)
        context_id = ids.gather(1, where[:, None]).squeeze(1)
        wins = (best_context > best) | ((best_context == best) & (context_id < kept))
        return torch.where(wins, context_id, kept)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str] | None:
        """The folder's tensors: ``draft.*`` to the base model (its head to the k-row head), ``kept_ids`` checked
        against the folder's, ``context_head_weight`` kept where context rows come from it."""
        found: dict[str, torch.Tensor] = {}

        def base_weights() -> Iterable[tuple[str, torch.Tensor]]:
            for name, tensor in weights:
                if name in ("kept_ids", "context_head_weight", "context_head_bias"):
                    found[name] = tensor
                elif name.endswith("lm_head.bias"):
                    raise ValueError(f"hf-vocabtrim: {ARCHITECTURE}: an LM head with a bias is not supported in vLLM.")
                else:
                    yield name.removeprefix("draft."), tensor

        loaded = self.base.load_weights(base_weights())
        if loaded is not None and "lm_head.weight" not in loaded:
            raise ValueError(f"hf-vocabtrim: {ARCHITECTURE}: no `draft.lm_head.weight`: not a trimmed draft.")
        kept = found.get("kept_ids")
        if kept is None:
            raise ValueError(f"hf-vocabtrim: {ARCHITECTURE}: no `kept_ids`: not a trimmed draft.")
        kept = kept.long().reshape(-1).to(self.kept_ids.device)
        if kept.shape != self.kept_ids.shape or not bool((kept[1:] > kept[:-1]).all()):
            raise ValueError(f"hf-vocabtrim: {ARCHITECTURE}: corrupt id map in kept_ids; re-create the folder.")
        self.kept_ids.copy_(kept)
        if self.context is not None:
            self.context.scorable = self._scorable(kept)
        stored = found.get("context_head_weight")
        if self.context_rows == "stored_head":
            if stored is None:
                raise ValueError(f"hf-vocabtrim: {ARCHITECTURE}: context_tokens with stored rows but no "
                                 "`context_head_weight`.")  # fmt: skip
            self.get_buffer("context_head_weight").copy_(stored.to(self.get_buffer("context_head_weight").dtype))
        return None if loaded is None else {f"base.{name}" for name in loaded}
