"""Export / import of kept sets for SGLang, EAGLE-3 (vLLM, SpecForge) and FR-Spec, with each engine's semantics."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.commands import main
from hf_vocabtrim.engines.export import eagle3_buffers, export_token_map, import_token_map
from hf_vocabtrim.tiny import tiny_causal_lm

V = 300
KEPT = np.array([0, 2, 3, 17, 64, 65, 199, 299])


@pytest.mark.parametrize("fmt", ["sglang", "eagle3", "frspec"])
def test_round_trip(fmt, tmp_path):
    ranked = KEPT[[3, 0, 7, 1, 2, 6, 4, 5]]  # FR-Spec keeps frequency order; the others sort
    path = export_token_map(ranked, tmp_path / f"map.{fmt}", fmt, vocab_size=V)
    assert np.array_equal(import_token_map(path, fmt, vocab_size=V), KEPT)


def test_engine_semantics(tmp_path):
    # EAGLE-3: target_id = i + d2t[i]; t2d marks kept ids; vLLM scatters draft logits into -inf at arange(k) + d2t
    buffers = eagle3_buffers(KEPT, V)
    d2t, t2d = buffers["d2t"], buffers["t2d"]
    assert d2t.dtype == torch.int64 and t2d.dtype == torch.bool and t2d.shape == (V,)
    assert torch.equal(torch.arange(len(KEPT)) + d2t, torch.as_tensor(KEPT)) and int(t2d.sum()) == len(KEPT)
    draft = tiny_causal_lm("llama", V, seed=0)
    trimmed = TrimmedDraftModel.from_draft(draft, KEPT, keep_special_tokens=False)
    draft_logits = trimmed(torch.tensor([[5, 6, 7]])).logits[0, -1]
    vllm = torch.full((V,), float("-inf")).index_copy(0, torch.arange(len(KEPT)) + d2t, draft_logits)
    assert torch.equal(vllm, trimmed.to_full_vocab(draft_logits))
    # SGLang: a torch.save'd 1-D tensor of hot ids, read with weights_only=True; head rows = head[hot]
    path = export_token_map(KEPT, tmp_path / "hot.pt", "sglang")
    hot = torch.load(path, weights_only=True)
    assert hot.ndim == 1 and torch.equal(hot, torch.as_tensor(KEPT))
    torch.testing.assert_close(draft.lm_head.weight[hot], trimmed.get_output_embeddings().weight)
    # FR-Spec: a torch.save'd Python list of ids, most frequent first
    freq = export_token_map([17, 0, 3], tmp_path / "freq_3.pt", "frspec")
    assert torch.load(freq, weights_only=True) == [17, 0, 3]


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump(Evil(), handle)
    with pytest.raises(pickle.UnpicklingError):
        import_token_map(path, "sglang")


def test_bad_maps_are_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"d2t": torch.tensor([0, 0, 5]), "t2d": torch.zeros(V, dtype=torch.bool)}, str(tmp_path / "bad.st"))
    with pytest.raises(ValueError, match="t2d"):
        import_token_map(tmp_path / "bad.st", "eagle3")
    torch.save(torch.tensor([1, 1, 2]), tmp_path / "dup.pt")
    with pytest.raises(ValueError, match="duplicated"):
        import_token_map(tmp_path / "dup.pt", "sglang")
    torch.save(torch.tensor([1, V + 3]), tmp_path / "range.pt")
    with pytest.raises(ValueError, match="out of range"):
        import_token_map(tmp_path / "range.pt", "sglang", vocab_size=V)
    with pytest.raises(ValueError, match="unknown format"):
        export_token_map(KEPT, tmp_path / "x", "medusa")


def test_cli_export_import(tmp_path):
    draft = tiny_causal_lm("llama", V, seed=0)
    draft.save_pretrained(tmp_path / "draft")
    TrimmedDraftModel.from_draft(draft, KEPT, keep_special_tokens=False).save_pretrained(tmp_path / "trimmed")
    for fmt in ("sglang", "eagle3", "frspec"):
        out = tmp_path / f"map_{fmt}"
        assert main(["export", "--model", str(tmp_path / "trimmed"), "--format", fmt, "--out", str(out)]) == 0
        assert (
            main(
                [
                    "import",
                    "--draft",
                    str(tmp_path / "draft"),
                    "--token-map",
                    str(out),
                    "--format",
                    fmt,
                    "--exact",
                    "--out",
                    str(tmp_path / f"back_{fmt}"),
                ]
            )
            == 0
        )
        back = load_file(str(tmp_path / f"back_{fmt}" / "model.safetensors"))["kept_ids"]
        assert np.array_equal(back.numpy(), KEPT)
        assert json.loads((tmp_path / f"back_{fmt}" / "config.json").read_text())["trimming"]["format"] == fmt
    assert main(["export", "--model", str(tmp_path / "draft"), "--format", "sglang", "--out", str(tmp_path / "x")]) == 2
