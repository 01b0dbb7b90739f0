"""A saved trimmed draft loads with trust_remote_code=True in a Python where hf_vocabtrim cannot be imported."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.tiny import tiny_causal_lm

# What the code files travelling with a checkpoint import outside `try` (transformers' check_imports imports these).
ALLOWED_IMPORTS = {"torch", "transformers", "accelerate", "__future__", "copy", "importlib", "os", "sys", "collections"}
ALLOWED_IMPORTS |= {"typing", "threading", "weakref", "."}

CHILD = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_vocabtrim" or name.startswith("hf_vocabtrim."):
                raise ImportError("hf_vocabtrim is blocked in this process")
            return None

    sys.meta_path.insert(0, Block())
    import torch
    from transformers import AutoModelForCausalLM

    folder, target_folder = sys.argv[1], sys.argv[2]
    draft = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)
    draft.config.fast_path = "static"  # needs the package: without it, the eager path runs (and says so)
    target = AutoModelForCausalLM.from_pretrained(target_folder)
    x = torch.tensor([[5, 9, 13, 21, 34]])
    kw = dict(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=16, do_sample=False)
    print(json.dumps({
        "module": type(draft).__module__,
        "hf_vocabtrim_loaded": any(m.startswith("hf_vocabtrim") for m in sys.modules),
        "kept": draft.kept_ids.tolist(),
        "equal": bool(torch.equal(target.generate(**kw), target.generate(**kw, assistant_model=draft))),
        "context_ids": int(draft.draft_ids.numel() - draft.kept_ids.numel()),
    }))
    """
)


def run_without_the_package(draft: Path, target: Path, modules: Path) -> dict:
    """Load ``draft`` with ``trust_remote_code`` in a Python where hf_vocabtrim cannot be imported, generate with
    ``target`` (see ``CHILD``), and return what the child printed."""
    env = {"HF_MODULES_CACHE": str(modules), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(draft), str(target)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _imports_outside_try(node: ast.AST) -> set[str]:
    """Top-level modules imported outside ``try`` blocks ("." for relative imports), as transformers' check sees."""
    if isinstance(node, ast.Try):
        return set()
    if isinstance(node, ast.Import):
        return {alias.name.split(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom):
        return {"." if node.level else (node.module or "").split(".")[0]}
    return set().union(*(_imports_outside_try(child) for child in ast.iter_child_nodes(node)))


def test_trust_remote_code_without_the_package(tmp_path):
    target = tiny_causal_lm("qwen2", 200, seed=0)
    draft = tiny_causal_lm("qwen2", 200, seed=0)
    trimmed = TrimmedDraftModel.from_draft(draft, range(0, 200, 4))
    trimmed.save_pretrained(tmp_path / "draft")
    target.save_pretrained(tmp_path / "target")
    assert trimmed.config.context_tokens  # qwen2 ties its embeddings: context tokens on, honoured by remote code
    for name in ("configuration_trimmed_draft.py", "modeling_trimmed_draft.py", "trimmed_head.py"):
        imported = _imports_outside_try(ast.parse((tmp_path / "draft" / name).read_text()))
        assert imported <= ALLOWED_IMPORTS, (name, imported - ALLOWED_IMPORTS)
    out = run_without_the_package(tmp_path / "draft", tmp_path / "target", tmp_path / "modules")
    assert out["module"].startswith("transformers_modules"), out["module"]
    assert not out["hf_vocabtrim_loaded"]
    assert out["kept"] == trimmed.kept_ids.tolist()
    assert out["equal"]
    assert out["context_ids"] > 0  # the ids of the sequence were scored beyond the kept set
    assert torch.equal(torch.tensor(out["kept"]), trimmed.kept_ids)
