# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Loading tokenizers, models and configs from folders, Hub ids or GGUF files (shared by the CLI and the scripts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DTYPES = ("auto", "float32", "bfloat16", "float16")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "tiktoken.model")
MODEL_FILES = ("config.json",)


def local_or_hub(source: str | Path, what: str, files: tuple[str, ...], gguf_file: str | None = None) -> str:
    """``source`` as given where it is a Hub id or a local folder holding a ``what`` (one of ``files``, or
    ``gguf_file``); one ``ValueError`` line for a local path that does not exist or a folder that holds none."""
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        wanted = (gguf_file,) if gguf_file else files
        if not any((path / name).is_file() for name in wanted):
            raise ValueError(f"{text} is a folder but holds no {what} (none of {', '.join(wanted)}).")
        return str(path)
    if path.exists():
        return str(path)
    looks_local = text.startswith(("/", "./", "../", "~", ".\\")) or text.count("/") > 1 or text.endswith("/")
    if looks_local or Path(text).suffix in (".json", ".gguf", ".safetensors"):
        raise ValueError(f"{text}: no such file or folder (a Hub id looks like `org/name`).")
    return text


def load_tokenizer(source: str | Path, gguf_file: str | None = None) -> Any:
    """``AutoTokenizer`` from a folder or Hub id (``gguf_file`` for GGUF checkpoints)."""
    from transformers import AutoTokenizer

    source = local_or_hub(source, "tokenizer", TOKENIZER_FILES, gguf_file)
    return AutoTokenizer.from_pretrained(source, **({"gguf_file": gguf_file} if gguf_file else {}))


def load_causal_lm(source: str | Path, gguf_file: str | None = None, dtype: str = "auto", **kwargs: Any) -> Any:
    """``AutoModelForCausalLM`` from a folder or Hub id (``gguf_file`` for GGUF checkpoints), in eval mode.

    ``dtype="auto"`` keeps the checkpoint's dtype (a bf16 draft stays bf16)."""
    import torch
    from transformers import AutoModelForCausalLM

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}.")
    kwargs["dtype"] = dtype if dtype == "auto" else getattr(torch, dtype)
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    source = local_or_hub(source, "model", MODEL_FILES, gguf_file)
    return AutoModelForCausalLM.from_pretrained(source, **kwargs).eval()


def load_draft_config(source: str | Path, **hub_kwargs: Any) -> Any:
    """A draft's text config from a folder, a Hub id or a ``config.json`` path (a trimmed draft gives its base)."""
    from transformers import AutoConfig

    path = Path(local_or_hub(source, "model config", MODEL_FILES))
    if path.is_file():
        data = json.loads(path.read_text())
        if "model_type" not in data:
            raise ValueError(f"{path} has no `model_type`: pass a transformers config.json.")
        if data["model_type"] == "trimmed_draft":
            data = data["text_config"]
        data = dict(data)
        config = AutoConfig.for_model(data.pop("model_type"), **data)
    else:
        config = AutoConfig.from_pretrained(str(source), **hub_kwargs)
    if getattr(config, "model_type", "") == "trimmed_draft":
        config = config.text_config
    return config.get_text_config(decoder=True)


def load_generation_config(source: str | Path) -> Any:
    """The draft's ``generation_config.json`` (its eos/pad/bos ids count as special), or ``None`` if it has none."""
    from transformers import GenerationConfig

    path = Path(source)
    folder = path.parent if path.is_file() else path
    try:
        return GenerationConfig.from_pretrained(str(folder))
    except (OSError, ValueError):
        return None
