"""`vocabtrim check` on `TrimmedDraftModel` folders (the same check the vLLM plugin runs before vLLM builds the
draft): a sound folder exits 0; each broken case exits 1 with one line naming the field and the fix."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from hf_vocabtrim import TrimmedDraftModel, commands
from hf_vocabtrim.model.folder_check import trimmed_folder_problems
from hf_vocabtrim.tiny import tiny_causal_lm


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("check")
    for name, tied, context in (("tied", True, True), ("untied", False, True), ("static", False, False)):
        draft = tiny_causal_lm("qwen2" if tied else "llama", 512, seed=0)
        trimmed = TrimmedDraftModel.from_draft(draft, list(range(40, 104)), keep_special_tokens=False,
                                               context_tokens=context)  # fmt: skip
        trimmed.save_pretrained(root / name)
    return root


def _variant(folders, base: str, name: str, config: dict | None = None, tensors=None):
    out = folders / name
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(folders / base, out)
    if config:
        saved = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**saved, **config}))
    if tensors:
        weights = load_file(str(out / "model.safetensors"))
        tensors(weights)
        save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def _check(capsys, *argv) -> tuple[int, str]:
    status = commands.main(["check", *map(str, argv)])
    return status, capsys.readouterr().out


def test_sound_folders_pass(folders, capsys):
    for name in ("tied", "untied", "static"):
        status, out = _check(capsys, folders / name)
        assert status == 0 and "ok (TrimmedDraftModel, k=64 of V=512" in out, out


def _drop(name):
    return lambda weights: weights.pop(name)


def _set(name, value):
    def change(weights):
        weights[name] = value(weights[name])

    return change


BROKEN = [
    ("k", "static", {"draft_vocab_size": 63}, None, "kept_ids: 64 ids but draft_vocab_size is 63"),
    ("k_out_of_range", "static", {"draft_vocab_size": 0}, None, "draft_vocab_size is 0"),
    ("no_kept_ids", "static", None, _drop("kept_ids"), "kept_ids: missing"),
    ("unsorted", "static", None, _set("kept_ids", lambda t: t.flip(0)), "kept_ids: not sorted"),
    ("out_of_range", "static", None, _set("kept_ids", lambda t: t + 500), "kept_ids: ids out of range"),
    ("head_rows", "static", None, _set("draft.lm_head.weight", lambda t: t[:60]), "draft.lm_head.weight: 60 rows"),
    ("embedding_rows", "static", None, _set("draft.model.embed_tokens.weight", lambda t: t[:500]), "500 rows but"),
    ("context_rows", "untied", None, _drop("context_head_weight"), "context_head_weight: missing"),
    ("context_setting", "untied", {"context_rows": "elsewhere"}, None, "context_rows is 'elsewhere'"),
]


@pytest.mark.parametrize(("name", "base", "config", "tensors", "said"), BROKEN, ids=[b[0] for b in BROKEN])
def test_each_broken_folder_is_named_with_its_fix(folders, capsys, name, base, config, tensors, said):
    broken = _variant(folders, base, name, config, tensors)
    status, out = _check(capsys, broken)
    assert status == 1 and said in out, out
    assert all(line.startswith(f"{broken}: ") for line in out.strip().splitlines())
    assert "vocabtrim trim" in out or "context_tokens false" in out


def test_the_targets_vocabulary_must_match(folders, capsys, tmp_path):
    target = tmp_path / "target"
    tiny_causal_lm("llama", 576, seed=0).save_pretrained(target)  # a padded vocabulary: V = 512 + 64
    status, out = _check(capsys, folders / "static", "--target", target)
    assert status == 1 and "differs from the target's V=576" in out and "--target TARGET" in out
    assert trimmed_folder_problems(folders / "static", 512) == []


def test_a_folder_that_is_not_a_trimmed_draft(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert "not a trimmed draft" in trimmed_folder_problems(tmp_path)[0]
    assert "missing" in trimmed_folder_problems(tmp_path / "nowhere")[0]
