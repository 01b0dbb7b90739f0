"""A real engine in the loop: vLLM's CPU build serves what this package writes, and its own counters say what it
accepted. Tiny models (``tests/vllm_models.py``) are served by vLLM in its own environment
(``VOCABTRIM_VLLM_PYTHON``, which ``.ci/run`` installs as a new machine would): the target alone, EAGLE-3 heads
trimmed by ``vocabtrim eagle3`` and ``TrimmedDraftModel`` folders as ``draft_model`` drafts (the vLLM plugin).
Greedy output must be the target's on every prompt; acceptance is read from vLLM's metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from hf_vocabtrim import TokenCounts, commands
from hf_vocabtrim.data.specials import end_of_reply_ids
from hf_vocabtrim.engines.eagle3 import head_keep_plan, load_head
from hf_vocabtrim.engines.vllm_serve import run_plan, speculative_config
from hf_vocabtrim.loaders import load_tokenizer

from . import vllm_models

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def _serve(
    python: str, models: dict, speculative: dict | None, groups: list[dict] | None = None, env=None, **plan
) -> dict:
    prompts = models["prompts"]
    plan = {"target": models["target"], "prompts": prompts, "max_model_len": 256, "speculative": speculative, **plan}
    plan["groups"] = groups or [{"prompts": list(range(len(prompts))), "max_tokens": vllm_models.NEW_TOKENS}]
    return run_plan(plan, python=python, timeout=600, env=env)


def _counts_with(counts: TokenCounts, extra_ids: list[int], path: Path) -> str:
    """The replies' counts with one more count for each of ``extra_ids`` (ids the untrimmed draft proposed)."""
    more = counts.counts.copy()
    more[list(extra_ids)] += 1
    TokenCounts(more, counts.tokenizer_name, counts.vocab_size, counts.vocab_hash, counts.num_conversations,
                int(more.sum()), mode=counts.mode, source=counts.source, extra=counts.extra).save(path)  # fmt: skip
    return str(path)


def _used_ids_k(keep, counts: TokenCounts) -> int:
    """k of a keep order (forced ids first, then by count) that keeps every counted id it can."""
    nonzero = counts.counts[keep.order[keep.num_forced :]] > 0
    return keep.num_forced + int(nonzero.sum())


def _result(served: dict, name: str) -> tuple[list, dict]:
    group = served[name]["groups"][0]
    return group["outputs"], group["metrics"]


def test_eagle3_heads_trimmed_by_vocabtrim_in_vllm(models, vllm_python, capsys):
    """Target alone, the untrimmed head, heads trimmed by `vocabtrim eagle3`, and the negative control (a trimmed
    head with `d2t` removed, what `vocabtrim check` exists to catch). Every greedy output is the target alone's. A
    head trimmed to every id the replies use and every id the untrimmed head proposed accepts exactly what the
    untrimmed head accepts (it proposes the same ids); trimmed to the replies' ids alone it can differ a little (a
    round that ends elsewhere changes the next ones); without d2t vLLM serves the head and acceptance collapses."""
    folder, tokenizer = models["folder"], load_tokenizer(models["target"])
    served = {"target": _serve(vllm_python, models, None)}
    served["head"] = _serve(vllm_python, models, speculative_config("eagle3", models["head"]), record_drafts=True)
    proposed = served["head"]["groups"][0]["drafted_ids"]
    replies = TokenCounts.load(models["counts"])
    head = load_head(models["head"])
    trimmed = {}
    for name, counts in (
        ("replies_and_proposals", _counts_with(replies, proposed, folder / "replies_and_proposals.json")),
        ("replies", models["counts"]),
    ):
        keep, _ = head_keep_plan(head, TokenCounts.load(counts), end_of_reply_ids(tokenizer))
        k = _used_ids_k(keep, TokenCounts.load(counts))
        out = folder / f"head_{name}"
        argv = ["eagle3", "--draft", models["head"], "--counts", counts, "--tokenizer", models["target"]]
        assert commands.main([*argv, "--k", str(k), "--out", str(out)]) == 0
        assert k < head.draft_vocab_size and load_head(out).draft_vocab_size == k
        trimmed[name] = out
    broken = folder / "head_no_d2t"
    broken.mkdir()
    (broken / "config.json").write_text((trimmed["replies"] / "config.json").read_text())
    tensors = load_file(str(trimmed["replies"] / "model.safetensors"))
    del tensors["d2t"]
    save_file(tensors, str(broken / "model.safetensors"))
    capsys.readouterr()
    assert commands.main(["check", str(broken)]) == 1 and "d2t is missing" in capsys.readouterr().out
    for name, path in (*trimmed.items(), ("no_d2t", broken)):
        served[name] = _serve(vllm_python, models, speculative_config("eagle3", path))
    outputs = {name: _result(served, name)[0] for name in served}
    metrics = {name: _result(served, name)[1] for name in served}
    for name in served:
        assert outputs[name] == outputs["target"] == models["replies"], name  # lossless, and = HF's greedy replies
    head_metrics = metrics["head"]
    assert head_metrics["accepted"] > head_metrics["drafts"]  # a head that works: > 1 accepted token per draft
    assert metrics["replies_and_proposals"]["accepted"] == head_metrics["accepted"]
    assert metrics["replies_and_proposals"]["per_position"] == head_metrics["per_position"]
    assert metrics["replies"]["acceptance_length"] >= 0.9 * head_metrics["acceptance_length"]
    assert metrics["no_d2t"]["acceptance_length"] < 1 + 0.2 * (head_metrics["acceptance_length"] - 1)


def test_trimmed_draft_models_in_vllm(models, vllm_python, capsys):
    """`TrimmedDraftModel` folders (saved with their remote code) served as `draft_model` drafts through the plugin:
    lossless greedy; exactly the untrimmed draft's accepted counts when every id the replies use and the untrimmed
    draft proposed is kept, fewer for a small k; sampling (vLLM's rejection sampler) keeps the target's distribution
    of the second token (the first drafted one): chi-square against the target's exact marginal."""
    from transformers import AutoConfig, GenerationConfig

    from hf_vocabtrim import KeepPlan

    folder = models["folder"]
    served = {"target": _serve(vllm_python, models, None)}
    served["draft"] = _serve(
        vllm_python, models, speculative_config("draft_model", models["draft"]), record_drafts=True
    )
    proposed = served["draft"]["groups"][0]["drafted_ids"]
    replies = TokenCounts.load(models["counts"])
    counts = _counts_with(replies, proposed, folder / "draft_replies_and_proposals.json")
    config, generation = AutoConfig.from_pretrained(models["draft"]), GenerationConfig.from_pretrained(models["draft"])
    keep = KeepPlan.from_counts(TokenCounts.load(counts), config, generation)
    drafts = {}
    for name, k in (("replies_and_proposals", _used_ids_k(keep, TokenCounts.load(counts))), ("small_k", 24)):
        out = folder / f"draft_{name}"
        assert commands.main(["trim", "--draft", models["draft"], "--counts", counts, "--k", str(k),
                              "--out", str(out)]) == 0  # fmt: skip
        saved = json.loads((out / "config.json").read_text())
        assert saved["architectures"] == ["TrimmedDraftModel"] and "auto_map" in saved  # saved with remote code
        assert (out / "modeling_trimmed_draft.py").exists() and saved["draft_vocab_size"] == k
        drafts[name] = str(out)
    capsys.readouterr()
    every = {"prompts": list(range(len(models["prompts"]))), "max_tokens": vllm_models.NEW_TOKENS}
    sampling = {"prompts": [0] * SAMPLES, "max_tokens": 2, "temperature": 1.0}
    for name, path in drafts.items():
        groups = [every, sampling] if name == "replies_and_proposals" else None
        served[name] = _serve(vllm_python, models, speculative_config("draft_model", path), groups)
    outputs = {name: _result(served, name)[0] for name in served}
    metrics = {name: _result(served, name)[1] for name in served}
    for name in served:
        assert outputs[name] == outputs["target"] == models["replies"], name
    assert metrics["draft"]["accepted"] > metrics["draft"]["drafts"]
    assert metrics["replies_and_proposals"]["accepted"] == metrics["draft"]["accepted"]
    assert metrics["replies_and_proposals"]["per_position"] == metrics["draft"]["per_position"]
    assert metrics["small_k"]["acceptance_length"] < metrics["draft"]["acceptance_length"]
    sampled = served["replies_and_proposals"]["groups"][1]
    assert sampled["metrics"]["drafts"] >= SAMPLES  # the second token of every sample went through speculation
    marginal = _second_token_marginal(models)
    assert _chi2_pvalue(_second_tokens(sampled), marginal) > 1e-3  # the target's own distribution
    # control: vLLM's CPU build without this package's plugin (VLLM_PLUGINS=none), the untrimmed draft: 0.32.0's
    # expand kernel samples the target at garbage temperatures, and the same test rejects it
    plain = _serve(vllm_python, models, speculative_config("draft_model", models["draft"]), [sampling],
                   env={"VLLM_PLUGINS": "none"})  # fmt: skip
    if plain["engine"]["vllm"] == "0.32.0":
        assert _chi2_pvalue(_second_tokens(plain["groups"][0]), marginal) < 1e-3


def test_a_gemma2_draft_scores_with_its_trimmed_head(models, vllm_python, capsys):
    """vLLM's Gemma 2 class scores with its input embedding (tied), not an LM head: the plugin must score with the
    k-row head. A Gemma 2 draft trimmed to every id the replies use and it proposed accepts exactly what it
    accepts untrimmed (scoring with the embedding's first k rows, it would not)."""
    from transformers import AutoConfig, GenerationConfig

    from hf_vocabtrim import KeepPlan

    draft = models["draft_gemma2"]  # (vLLM's target alone gives the replies: test_trimmed_draft_models_in_vllm)
    served = {"draft": _serve(vllm_python, models, speculative_config("draft_model", draft), record_drafts=True)}
    proposed = served["draft"]["groups"][0]["drafted_ids"]
    folder = models["folder"]
    counts = _counts_with(TokenCounts.load(models["counts"]), proposed, folder / "gemma2_replies_and_proposals.json")
    config = AutoConfig.from_pretrained(draft)
    keep = KeepPlan.from_counts(TokenCounts.load(counts), config, GenerationConfig.from_pretrained(draft))
    k, out = _used_ids_k(keep, TokenCounts.load(counts)), folder / "draft_gemma2_trimmed"
    assert commands.main(["trim", "--draft", draft, "--counts", counts, "--k", str(k), "--out", str(out)]) == 0
    capsys.readouterr()
    served["trimmed"] = _serve(vllm_python, models, speculative_config("draft_model", str(out)))
    outputs = {name: _result(served, name)[0] for name in served}
    metrics = {name: _result(served, name)[1] for name in ("draft", "trimmed")}
    assert outputs["trimmed"] == outputs["draft"] == models["replies"]
    assert metrics["draft"]["accepted"] > metrics["draft"]["drafts"]  # the draft agrees with the target
    assert k < config.vocab_size and metrics["trimmed"]["per_position"] == metrics["draft"]["per_position"]


def _second_tokens(group: dict) -> torch.Tensor:
    return torch.bincount(torch.tensor([o[1] for o in group["outputs"]]), minlength=512)


SAMPLES = 600


def _second_token_marginal(models: dict) -> torch.Tensor:
    """The target's exact distribution of its second sampled token after prompt 0 (temperature 1)."""
    from transformers import AutoModelForCausalLM

    target = AutoModelForCausalLM.from_pretrained(models["target"]).eval()
    prompt = torch.tensor([models["prompts"][0]])
    with torch.no_grad():
        first = target(prompt).logits[0, -1].double().softmax(-1)
        vocab = first.numel()
        following = torch.cat([prompt.repeat(vocab, 1), torch.arange(vocab)[:, None]], dim=1)
        given = torch.cat([target(chunk).logits[:, -1].double().softmax(-1) for chunk in following.split(128)])
    return first @ given


def _chi2_pvalue(observed: torch.Tensor, expected_p: torch.Tensor) -> float:
    """Chi-square goodness of fit, ids with fewer than 5 expected draws pooled into one category."""
    expected = expected_p[: observed.numel()] * observed.sum()
    small = expected < 5
    observed = torch.cat([observed[~small].double(), observed[small].sum().double()[None]])
    expected = torch.cat([expected[~small], expected[small].sum()[None]])
    stat = ((observed - expected) ** 2 / expected.clamp_min(1e-12)).sum()
    return float(torch.special.gammaincc(torch.tensor((observed.numel() - 1) / 2.0, dtype=torch.float64), stat / 2))


def test_eagle3_verify_with_serves_the_users_chats(models, vllm_python):
    """`vocabtrim eagle3 --verify-with TARGET` in an environment with vLLM: lossless yes/no and the acceptance
    ratio, on the user's own chats; without vLLM, one line saying what to install."""
    out = models["folder"] / "head_verified"
    argv = ["-m", "hf_vocabtrim", "eagle3", "--draft", models["head"], "--counts", models["counts"], "--k", "96"]
    argv += ["--out", str(out), "--verify-with", models["target"], "--data", models["held"], "--verify-prompts", "4"]
    result = subprocess.run([vllm_python, *argv], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    verify = shown["verify"]
    assert verify["lossless"] and verify["original_lossless"] and verify["prompts"] == 4
    assert 0 < verify["acceptance_ratio"] <= 1.5 and verify["engine"]["vllm"]
    assert "lossless on 4 chats" in result.stderr
    if subprocess.run([sys.executable, "-c", "import vllm"], capture_output=True).returncode != 0:  # this venv
        argv[argv.index("--out") + 1] = str(out) + "_here"
        here = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=300)
        assert here.returncode == 2 and "needs vLLM in this environment" in here.stderr
        assert len(here.stderr.strip().splitlines()) == 1 and not Path(str(out) + "_here").exists()
