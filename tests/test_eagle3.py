"""EAGLE-3 / DFlash heads: trimming in every layout (real key names and config fields, small sizes), the engines'
scatter on every kept id, coverage, the round trip through `vocabtrim import`, and the lint on broken checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from hf_vocabtrim import commands
from hf_vocabtrim.data.counts import TokenCounts
from hf_vocabtrim.engines.eagle3 import check_head, head_warnings, load_head, lost_end_ids, plan_head, trim_head
from hf_vocabtrim.engines.export import import_token_map
from hf_vocabtrim.selection.coverage import coverage_of

V, ROWS, HIDDEN, EOS = 300, 120, 16, 2


def _layer(prefix: str, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    shapes = {
        "self_attn.q_proj.weight": (2 * 8, 2 * HIDDEN),  # the attention reads [embedding; fused state]: 2 x hidden
        "self_attn.k_proj.weight": (8, 2 * HIDDEN),
        "self_attn.v_proj.weight": (8, 2 * HIDDEN),
        "self_attn.o_proj.weight": (HIDDEN, 2 * 8),
        "mlp.gate_proj.weight": (32, HIDDEN),
        "mlp.up_proj.weight": (32, HIDDEN),
        "mlp.down_proj.weight": (HIDDEN, 32),
        "hidden_norm.weight": (HIDDEN,),
        "input_layernorm.weight": (HIDDEN,),
        "post_attention_layernorm.weight": (HIDDEN,),
    }
    return {f"{prefix}.{name}": torch.randn(shape, generator=g).to(dtype) for name, shape in shapes.items()}


def write_head(
    folder, layout: str, *, dtype=torch.bfloat16, ids=None, edit=None, weights="safetensors", t2d=True, vocab=V, eos=EOS
):
    """An EAGLE-3 / DFlash checkpoint as the engines read it, with ROWS head rows over a target vocabulary of V."""
    g = torch.Generator().manual_seed(0)
    if ids is None:
        ids = torch.sort(torch.cat([torch.tensor([1, EOS]), 3 + torch.randperm(V - 3, generator=g)[: ROWS - 2]])).values
    ids = torch.as_tensor(ids)
    layer = {"model_type": "llama", "hidden_size": HIDDEN, "num_attention_heads": 2, "num_key_value_heads": 1,
             "head_dim": 8, "intermediate_size": 32, "num_hidden_layers": 1, "vocab_size": vocab}  # fmt: skip
    if layout == "speculators":
        config = {"speculators_model_type": "eagle3", "architectures": ["Eagle3Speculator"], "draft_vocab_size": ROWS,
                  "norm_before_residual": False, "transformer_layer_config": layer, "eos_token_id": EOS,
                  "speculators_config": {"algorithm": "eagle3", "default_proposal_method": "greedy",
                                         "proposal_methods": [{"proposal_type": "greedy", "speculative_tokens": 5}],
                                         "verifier": {"name_or_path": "meta-llama/Llama-3.1-8B-Instruct",
                                                      "architectures": ["LlamaForCausalLM"]}}}  # fmt: skip
        prefix = "layers.0"
    elif layout == "dflash":
        config = {**layer, "architectures": ["DFlashDraftModel"], "model_type": "qwen3", "draft_vocab_size": ROWS,
                  "eos_token_id": EOS, "dflash_config": {"target_layer_ids": [1, 3], "mask_token_id": 5}}  # fmt: skip
        prefix = "layers.0"
    else:
        config = {
            **layer,
            "architectures": ["LlamaForCausalLMEagle3"],
            "draft_vocab_size": len(ids),
            "eos_token_id": eos,
        }
        prefix = "midlayer"
    tensors = {
        "fc.weight": torch.randn(HIDDEN, 3 * HIDDEN, generator=g).to(dtype),
        "norm.weight": torch.ones(HIDDEN, dtype=dtype),
        "lm_head.weight": torch.randn(len(ids), HIDDEN, generator=g).to(dtype),
        "d2t": ids - torch.arange(len(ids)),
        **_layer(prefix, dtype),
    }
    if t2d:
        mask = torch.zeros(vocab, dtype=torch.bool)
        mask[ids] = True
        tensors["t2d"] = mask
    if edit is not None:
        edit(config, tensors)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if weights == "bin":
        torch.save(tensors, folder / "pytorch_model.bin")
    elif weights == "sharded":
        names = sorted(tensors)
        shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
        for shard, keys in shards.items():
            save_file({k: tensors[k] for k in keys}, str(folder / shard))
        index = {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        save_file(tensors, str(folder / "model.safetensors"))
    return folder


def counts_file(path) -> TokenCounts:
    rng = np.random.default_rng(0)
    counts = np.bincount(rng.zipf(1.3, 20_000) % V, minlength=V)
    table = TokenCounts(counts, "target-tokenizer", V, "hash", 50, int(counts.sum()), extra={"special_ids": [EOS]})
    table.save(path)
    return table


def engine_scatter(weight: torch.Tensor, d2t: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """What vLLM's compute_logits and SGLang's hot ids do: head logits into a -inf row of width V at arange + d2t."""
    logits = hidden @ weight.float().T
    full = logits.new_full((hidden.shape[0], V), float("-inf"))
    full[:, torch.arange(d2t.numel()) + d2t] = logits
    return full


@pytest.mark.parametrize("weights", ["safetensors", "sharded", "bin"])
@pytest.mark.parametrize("layout", ["eagle", "speculators", "dflash"])
def test_trim_every_layout(layout, weights, tmp_path, capsys):
    source = write_head(tmp_path / "head", layout, weights=weights)
    counts = counts_file(tmp_path / "counts.json")
    out = tmp_path / "trimmed"
    args = ["eagle3", "--draft", str(source), "--counts", str(tmp_path / "counts.json"), "--out", str(out)]
    assert commands.main([*args, "--min-coverage", "0.4", "--alpha", "0.5", "--k-min", "8", "--trials", "20"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    before, after = load_head(source), load_head(out)
    assert after.layout == layout and check_head(after) == []
    k = after.draft_vocab_size
    kept = after.head_ids
    assert k == summary["k"] < ROWS and set(kept) <= set(before.head_ids) and EOS in kept  # specials stay
    assert summary["coverage"] == pytest.approx(coverage_of(kept, counts.counts), abs=1e-12)
    hidden = torch.randn(7, HIDDEN)
    old = engine_scatter(before.tensors["lm_head.weight"], before.tensors["d2t"], hidden)
    new = engine_scatter(after.tensors["lm_head.weight"], after.tensors["d2t"], hidden)
    torch.testing.assert_close(new[:, kept], old[:, kept])  # every kept id scores as in the original head
    outside = np.ones(V, dtype=bool)
    outside[kept] = False
    assert torch.isneginf(new[:, outside]).all()
    for name, tensor in before.tensors.items():  # every other tensor unchanged, same dtype
        if name not in ("lm_head.weight", "d2t", "t2d"):
            assert torch.equal(after.tensors[name], tensor) and after.tensors[name].dtype == tensor.dtype
    assert after.tensors["lm_head.weight"].dtype == torch.bfloat16 and after.tensors["d2t"].dtype == torch.int64
    assert after.tensors["t2d"].dtype == torch.bool and int(after.tensors["t2d"].sum()) == k
    assert {key: v for key, v in after.config.items() if key != "draft_vocab_size"} == {
        key: v for key, v in before.config.items() if key != "draft_vocab_size"
    }
    assert (out / "model.safetensors").exists() and "trimmed to" in (out / "README.md").read_text()
    assert (tmp_path / "trimmed.report" / "trim_report.png").exists()
    assert np.array_equal(import_token_map(out / "model.safetensors", "eagle3"), np.sort(kept))  # the round trip


def test_fixed_k_plan_reuse_and_python_api(tmp_path, capsys):
    source = write_head(tmp_path / "head", "eagle")
    counts = counts_file(tmp_path / "counts.json")
    head = load_head(source)
    planned, missing = plan_head(head, counts, k=32, progress=False)
    assert planned.choice.k == 32 and missing == []
    kept = planned.keep_plan.kept_ids()
    ranked = sorted(set(head.head_ids.tolist()) - {EOS}, key=lambda i: (-counts.counts[i], i))
    assert set(kept) == {EOS, *ranked[:31]}  # the eos row first, then the head's most counted ids
    with pytest.raises(ValueError, match="the head's 120 rows cover at most"):
        plan_head(head, counts, min_coverage=0.99, progress=False)
    with pytest.raises(ValueError, match="out of range: the head has 120 rows"):
        plan_head(head, counts, k=500, progress=False)
    with pytest.raises(ValueError, match="no row in the head"):
        trim_head(head, [0, 1])  # 0 is not among the head's ids (1, 2 and 3 + a permutation)
    args = ["eagle3", "--draft", str(source), "--counts", str(tmp_path / "counts.json")]
    assert commands.main([*args, "--k", "40", "--out", str(tmp_path / "a")]) == 0
    assert commands.main([*args, "--plan", str(tmp_path / "a.report"), "--k", "40", "--out", str(tmp_path / "b")]) == 0
    assert np.array_equal(load_head(tmp_path / "a").head_ids, load_head(tmp_path / "b").head_ids)


def _absolute(config, tensors):
    tensors["d2t"] = torch.arange(ROWS) + tensors["d2t"]  # the target ids themselves, not offsets


def _rows_mismatch(config, tensors):
    tensors["lm_head.weight"] = tensors["lm_head.weight"][:-1]


def _unsorted(config, tensors):
    ids = torch.arange(ROWS) + tensors["d2t"]
    ids[[10, 11]] = ids[[11, 10]]
    tensors["d2t"] = ids - torch.arange(ROWS)


def _missing(config, tensors):
    del tensors["d2t"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (_missing, "d2t is missing"),
        (_absolute, "absolute target ids"),
        (_rows_mismatch, "rows but draft_vocab_size"),
        (_unsorted, "not strictly increasing"),
    ],
    ids=["missing-d2t", "absolute-d2t", "rows-mismatch", "unsorted"],
)
@pytest.mark.parametrize("with_t2d", [True, False], ids=["t2d", "no-t2d"])
def test_lint_catches_each_broken_checkpoint_in_one_line(edit, message, with_t2d, tmp_path, capsys):
    ids = torch.sort(torch.cat([torch.tensor([EOS]), torch.arange(140, 140 + ROWS - 1)])).values  # absolute ids > V-k
    broken = write_head(tmp_path / "broken", "eagle", ids=ids, edit=edit, t2d=with_t2d)
    assert commands.main(["check", str(broken)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    clean = write_head(tmp_path / "clean", "eagle", ids=ids, t2d=with_t2d)
    assert commands.main(["check", str(clean)]) == 0 and "ok (eagle layout" in capsys.readouterr().out
    args = ["eagle3", "--draft", str(broken), "--counts", str(tmp_path / "c.json"), "--out", str(tmp_path / "o")]
    counts_file(tmp_path / "c.json")
    assert commands.main(args) == 2 and "does not lint clean" in capsys.readouterr().err  # never trims a broken head


def test_lint_names_wrong_dtypes_and_warns_of_missing_end_of_turn(tmp_path, capsys):
    ids = torch.arange(10, 10 + ROWS)  # no row for eos (id 2)

    def wrong(config, tensors):
        tensors["d2t"] = tensors["d2t"].to(torch.int32)
        tensors["t2d"] = tensors["t2d"].to(torch.uint8)

    head = load_head(write_head(tmp_path / "h", "eagle", ids=ids, edit=wrong))
    problems = check_head(head)
    assert any("d2t is torch.int32" in p for p in problems) and any("t2d is torch.uint8" in p for p in problems)
    assert not any("end-of-reply" in p for p in problems)  # a warning, not a problem: engines serve such a head
    assert any("no row for end-of-reply ids [2]" in w for w in head_warnings(head))
    clean = write_head(tmp_path / "ok", "eagle", ids=ids)
    assert check_head(load_head(clean)) == []
    assert commands.main(["check", str(clean)]) == 0  # warnings only: exit 0, the warning and "ok" printed
    out = capsys.readouterr().out
    assert "warning: the head has no row for end-of-reply ids [2]" in out and "ok (eagle layout" in out


def _replies_head(folder, tokenizer, *, end_of_turn: bool):
    """A head built SpecForge's way: its draft vocabulary is the ids most used in the training replies (end of turn
    included, as the replies end with it), here over the real tokenizer's vocabulary."""
    from hf_vocabtrim.data.specials import end_of_turn_ids
    from hf_vocabtrim.tiny import demo_chats

    replies = [m["content"] for chat in demo_chats(60, seed=2) for m in chat["messages"] if m["role"] == "assistant"]
    ids = {i for text in replies for i in tokenizer(text, add_special_tokens=False)["input_ids"]}
    ends = end_of_turn_ids(tokenizer)
    assert ends, "the template must end an assistant turn with an added token"
    ids = (ids | ends) if end_of_turn else (ids - ends - {tokenizer.eos_token_id})
    return write_head(folder, "eagle", ids=torch.tensor(sorted(ids)), vocab=len(tokenizer), eos=None), sorted(ends)


@pytest.mark.parametrize("name", ["llama3_tokenizer", "qwen3_tokenizer"])
def test_a_specforge_head_trims_with_the_real_tokenizer(name, request, tmp_path, capsys):
    """Only the ids that end a reply matter: the lint no longer asks for rows for bos, pad or every special id (the
    Llama 3.1 tokenizer's <|begin_of_text|>, Qwen's pad), and a head without an end-of-turn row is trimmed with a
    warning (trimming cannot add a row; vLLM serves such a head); the trimmed head keeps every end row it had."""
    from hf_vocabtrim.data.counting import count_tokens
    from hf_vocabtrim.tiny import demo_chats

    tokenizer = request.getfixturevalue(name)
    folder = tmp_path / "tok"
    tokenizer.save_pretrained(folder)
    counts = count_tokens(tokenizer, demo_chats(60, seed=2), progress=False)
    counts.save(tmp_path / "counts.json")
    for end_of_turn in (True, False):
        head, ends = _replies_head(tmp_path / f"head{end_of_turn}", tokenizer, end_of_turn=end_of_turn)
        assert commands.main(["check", str(head), "--tokenizer", str(folder)]) == 0
        checked = capsys.readouterr().out
        assert ("warning" in checked) is not end_of_turn and "bos" not in checked
        out = tmp_path / f"out{end_of_turn}"
        args = ["eagle3", "--draft", str(head), "--counts", str(tmp_path / "counts.json"), "--out", str(out)]
        assert commands.main([*args, "--tokenizer", str(folder), "--k", "40"]) == 0
        captured = capsys.readouterr()
        trimmed = load_head(out)
        assert trimmed.draft_vocab_size == 40 and check_head(trimmed) == []
        if end_of_turn:  # kept: its row was in the head
            assert set(ends) <= set(trimmed.head_ids.tolist()) and "warning" not in captured.err
        else:  # said in the command's output and in the card, never a refusal
            assert "no row for end-of-reply ids" in captured.err
            assert "end-of-reply ids the original head had no row for" in (out / "README.md").read_text()


def test_a_trimmed_head_that_loses_an_end_row_is_an_error(tmp_path):
    ids = torch.arange(0, ROWS)  # eos (2) has a row
    head = load_head(write_head(tmp_path / "h", "eagle", ids=ids))
    without = trim_head(head, np.arange(3, 43))
    assert lost_end_ids(head, without) == [EOS] and lost_end_ids(head, trim_head(head, np.arange(0, 40))) == []
