"""Coverage curves, TPE under a coverage floor vs the exact optimum, the report files and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hf_vocabtrim.commands import main
from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.data.counts import TokenCounts
from hf_vocabtrim.loaders import load_draft_config
from hf_vocabtrim.selection.coverage import coverage_curve, coverage_of, rank_ids
from hf_vocabtrim.selection.keep_plan import KeepPlan
from hf_vocabtrim.selection.optimize import Curves, choose_k, exact_optimum, pareto_front
from hf_vocabtrim.selection.planning import Utility, plan
from hf_vocabtrim.selection.report import write_report
from hf_vocabtrim.tiny import demo_chats, tiny_causal_lm


def test_rank_and_coverage():
    counts = np.array([0, 5, 0, 3, 3, 9, 0, 0])
    order = rank_ids(counts, forced=[6])
    assert order.tolist() == [6, 5, 1, 3, 4, 0, 2, 7]  # forced first, then count desc, ties by lower id
    curve = coverage_curve(counts, order)
    assert curve[0] == 0 and curve[1] == 0 and curve[2] == pytest.approx(9 / 20) and curve[-1] == 1.0
    keep = KeepPlan(order=order, num_forced=1, vocab_hash="h")
    assert keep.kept_ids(3).tolist() == [1, 5, 6]
    assert coverage_of([5, 1], counts) == pytest.approx(14 / 20)
    with pytest.raises(ValueError, match="out of range"):
        keep.kept_ids(9)
    with pytest.raises(ValueError, match="out of range"):
        keep.kept_ids(0)
    with pytest.raises(ValueError, match="corrupt keep plan"):
        KeepPlan(order=[0, 0, 1], num_forced=0, vocab_hash="h")
    with pytest.raises(ValueError, match="mismatch"):
        rank_ids(counts, vocab_size=4)
    padded = rank_ids(counts, vocab_size=10)
    assert len(padded) == 10 and set(padded[-2:]) == {8, 9}


def _curves(vocab=50_000, seed=0) -> Curves:
    rng = np.random.default_rng(seed)
    counts = rng.zipf(1.3, size=200_000) % vocab
    counts = np.bincount(counts, minlength=vocab)
    order = rank_ids(counts)
    ks = np.arange(vocab + 1)
    return Curves(coverage=coverage_curve(counts, order), latency_reduction=0.6 * (vocab - ks) / vocab)


def test_tpe_close_to_exact_and_respects_floor():
    curves = _curves()
    utility = curves.utility(0.5)
    choice = choose_k(utility, curves, k_min=64, min_coverage=0.8, n_trials=50, seed=0)
    exact_k, exact_u = exact_optimum(utility, curves, 64, curves.vocab_size, 0.8)
    assert (choice.exact_k, choice.exact_value) == (exact_k, exact_u)
    assert curves.coverage[choice.k] >= 0.8 and choice.gap <= 0.01
    ks = np.arange(64, curves.vocab_size + 1)
    feasible = ks[curves.coverage[ks] >= 0.8]
    assert exact_u == pytest.approx(utility[feasible].max())
    assert len(choice.trials) == 50 and any(not t["feasible"] for t in choice.trials)  # the constraint was active


def test_infeasible_floor_names_the_best_reachable_coverage():
    curves = _curves()
    with pytest.raises(ValueError, match=r"highest coverage reachable with k <= 100 is 0\.\d+"):
        choose_k(curves.utility(0.5), curves, k_min=10, k_max=100, min_coverage=0.99)
    with pytest.raises(ValueError, match="invalid"):
        choose_k(curves.utility(0.5), curves, k_min=100, k_max=10)
    with pytest.raises(ValueError, match="alpha"):
        curves.utility(1.5)


def test_pareto_front_is_non_dominated():
    curves = _curves(vocab=5000)
    front = pareto_front(curves, 1, 5000, max_points=10_000)
    cov = [p["coverage"] for p in front]
    red = [p["latency_reduction"] for p in front]
    assert all(a < b for a, b in zip(cov, cov[1:])) and all(a > b for a, b in zip(red, red[1:]))


def test_plan_writes_report(tiny_tokenizer, tmp_path):
    counts = count_tokens(tiny_tokenizer, demo_chats(120), progress=False)
    held = count_tokens(tiny_tokenizer, demo_chats(40, seed=9), progress=False)
    draft = tiny_causal_lm("llama", len(tiny_tokenizer), eos_token_id=tiny_tokenizer.eos_token_id)
    draft.config.save_pretrained(tmp_path / "draft")
    config = load_draft_config(tmp_path / "draft" / "config.json")
    result = plan(
        counts,
        config,
        objective=Utility(alpha=0.7),
        min_coverage=0.98,
        k_min=8,
        n_trials=25,
        heldout=held,
        progress=False,
    )
    summary = write_report(result, tmp_path / "out", config, alpha=0.7)
    for name in ("summary.json", "trials.json", "pareto.json", "trim_report.png", "keep_plan.safetensors"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in (
        "k",
        "coverage",
        "latency_reduction",
        "utility",
        "exact_k",
        "exact_objective_value",
        "heldout_coverage",
        "calibration_coverage",
        "tpe_gap",
        "flops_full",
    ):
        assert key in on_disk
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["coverage"] >= 0.98 and summary["k"] < len(tiny_tokenizer)
    assert summary["coverage_basis"] == "calibration" and summary["coverage"] == summary["calibration_coverage"]
    heldout_basis = plan(
        counts, config, min_coverage=0.9, k_min=8, n_trials=10, heldout=held, coverage_basis="heldout", progress=False
    )
    k = heldout_basis.choice.k
    assert heldout_basis.curves.coverage[k] == heldout_basis.curves.heldout_coverage[k] >= 0.9
    assert KeepPlan.load(tmp_path / "out").k == summary["k"]


def test_cli_count_optimize_trim(tiny_tokenizer, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in demo_chats(80)))
    tiny_tokenizer.save_pretrained(tmp_path / "draft")
    draft = tiny_causal_lm("qwen2", len(tiny_tokenizer), eos_token_id=tiny_tokenizer.eos_token_id)
    draft.save_pretrained(tmp_path / "draft")
    assert (
        main(
            [
                "count",
                "--data",
                str(data),
                "--tokenizer",
                str(tmp_path / "draft"),
                "--out",
                str(tmp_path / "counts.json"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "optimize",
                "--counts",
                str(tmp_path / "counts.json"),
                "--draft-config",
                str(tmp_path / "draft"),
                "--min-coverage",
                "0.9",
                "--alpha",
                "0.5",
                "--trials",
                "20",
                "--k-min",
                "8",
                "--out",
                str(tmp_path / "opt"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "opt" / "summary.json").read_text())
    assert (
        main(
            [
                "trim",
                "--draft",
                str(tmp_path / "draft"),
                "--counts",
                str(tmp_path / "counts.json"),
                "--summary",
                str(tmp_path / "opt" / "summary.json"),
                "--out",
                str(tmp_path / "trimmed"),
            ]
        )
        == 0
    )
    from transformers import AutoModelForCausalLM

    trimmed = AutoModelForCausalLM.from_pretrained(tmp_path / "trimmed")
    assert trimmed.config.draft_vocab_size == summary["k"]
    # the kept set trimmed is exactly the one whose coverage was reported: one keep plan from optimize to trim
    keep = KeepPlan.load(tmp_path / "opt")
    counts = TokenCounts.load(tmp_path / "counts.json")
    assert trimmed.kept_ids.tolist() == sorted(keep.order[: summary["k"]].tolist())
    assert coverage_of(trimmed.kept_ids.tolist(), counts.counts) == pytest.approx(summary["coverage"], abs=1e-12)
    assert trimmed.config.trimming["coverage"] == pytest.approx(summary["coverage"], abs=1e-12)
    assert trimmed.config.trimming["plan_fingerprint"] == summary["plan_fingerprint"]
    assert trimmed.config.context_tokens  # qwen2 ties its embeddings: context tokens on by default
    # failures exit non-zero with a message: an unreachable floor (the parser rejects one outside [0, 1])
    optimize = ["optimize", "--counts", str(tmp_path / "counts.json"), "--draft-config", str(tmp_path / "draft")]
    assert main([*optimize, "--min-coverage", "1.0", "--k-max", "8", "--out", str(tmp_path / "bad")]) == 2
    with pytest.raises(SystemExit) as exit_:
        main([*optimize, "--min-coverage", "1.01", "--out", str(tmp_path / "bad")])
    assert exit_.value.code == 2
    assert (
        main(
            [
                "trim",
                "--draft",
                str(tmp_path / "draft"),
                "--counts",
                str(tmp_path / "counts.json"),
                "--k",
                "999999",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )


def test_cli_help_and_module_entry_point():
    for args in (["--help"], ["count", "--help"], ["optimize", "--help"], ["trim", "--help"]):
        result = subprocess.run([sys.executable, "-m", "hf_vocabtrim", *args], capture_output=True, text=True)
        assert result.returncode == 0 and "usage:" in result.stdout
    result = subprocess.run([sys.executable, "-m", "hf_vocabtrim", "count"], capture_output=True, text=True)
    assert result.returncode != 0 and "required" in result.stderr


def test_cli_profile_acceptance_and_speedup_objective(tiny_tokenizer, tmp_path, capsys):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in demo_chats(40)))
    tiny_tokenizer.save_pretrained(tmp_path / "draft")
    tiny_causal_lm("llama", len(tiny_tokenizer), eos_token_id=tiny_tokenizer.eos_token_id).save_pretrained(
        tmp_path / "draft"
    )
    draft, out = str(tmp_path / "draft"), tmp_path
    assert main(["count", "--data", str(data), "--tokenizer", draft, "--out", str(out / "counts.json")]) == 0
    profile = ["profile", "--draft", draft, "--ks", "64", "256", "--rounds", "2", "--steps", "2"]
    assert main([*profile, "--out", str(out / "fit.json")]) == 0
    fit = json.loads((out / "fit.json").read_text())
    assert [p["k"] for p in fit["points"]] == [64, 256, len(tiny_tokenizer)] and "b_ms_per_row" in fit
    head = fit["b_ms_per_row"] * len(tiny_tokenizer)
    assert fit["lm_head_share"] == pytest.approx(head / (fit["a_ms"] + head))
    assert fit["hardware"].startswith("cpu: ") and f", {fit['threads']} thread" in fit["hardware"]  # CPU named
    assert f"of the draft's step on {fit['hardware']}" in capsys.readouterr().out
    assisted = ["--assisted", "--target", draft, "--contexts", "8", "40", "--new-tokens", "16", "--gamma", "3"]
    assert main(["profile", "--draft", draft, *assisted, "--out", str(out / "costs.json")]) == 0  # default ks
    costs = json.loads((out / "costs.json").read_text())
    assert costs["gamma"] == 3 and costs["vocab_size"] == len(tiny_tokenizer) and costs["info"]["repeats"] == 2
    assert costs["ref_k"] == len(tiny_tokenizer) // 8  # the default ks, scaled to a small vocabulary
    assert all(costs[key] > 0 for key in ("target_token_ms", "verify_round_ms", "draft_round_full_ms"))
    assert set(costs["context_slopes"]) == {"target", "verify", "draft"} and costs["ref_context"] == 8 + 16 / 2
    acceptance = ["acceptance", "--target", draft, "--draft", draft, "--data", str(data), "--counts"]
    acceptance += [str(out / "counts.json"), "--ks", "32", "128", "--gamma", "3", "--max-examples", "8"]
    assert main([*acceptance, "--out", str(out / "acc.json")]) == 0
    acc = json.loads((out / "acc.json").read_text())
    assert acc["ks"][-1] == len(tiny_tokenizer) and acc["match_rate"][-1] == 1.0  # draft == target: all match
    assert acc["tau"][0] <= acc["tau"][-1] <= 4.0
    assert all(c >= s for c, s in zip(acc["tau_context"], acc["tau"]))  # context ids only add matches
    optimize = ["optimize", "--counts", str(out / "counts.json"), "--draft-config", draft, "--k-min", "16"]
    optimize += ["--min-coverage", "0.9", "--trials", "20", "--objective", "speedup", "--acceptance"]
    optimize += [str(out / "acc.json"), "--costs", str(out / "costs.json"), "--context-tokens"]
    capsys.readouterr()
    assert main([*optimize, "--out", str(out / "opt")]) == 0
    assert "a context plan: trim it with `--context-tokens`" in capsys.readouterr().out  # the mode it is for
    summary = json.loads((out / "opt" / "summary.json").read_text())
    assert summary["objective"] == "speedup"
    assert set(summary["objectives"]) == {"utility", "speedup", "speedup_static"}  # both tau curves reported
    assert summary["context_tokens"] and summary["plan_fingerprint"] == acc["plan_fingerprint"]
    assert summary["objective_value"] == pytest.approx(summary["predicted_speedup"])
    assert summary["advice"].startswith("trim to k=" if summary["trimming_pays"] else "trimming does not pay here")
    # an acceptance curve of another keep order is refused
    other = str(out / "other_counts.json")
    assert main(["count", "--data", str(data), "--tokenizer", draft, "--out", other, "--max-examples", "5"]) == 0
    optimize[2] = other
    assert main([*optimize, "--out", str(out / "bad")]) == 2


def test_speedup_objective_says_when_trimming_does_not_pay(tiny_tokenizer):
    from hf_vocabtrim.selection.acceptance import AcceptanceCurve
    from hf_vocabtrim.selection.planning import Speedup
    from hf_vocabtrim.selection.report import summarize
    from hf_vocabtrim.selection.speedup import CostModel

    vocab = len(tiny_tokenizer)
    counts = count_tokens(tiny_tokenizer, demo_chats(60), progress=False)
    config = tiny_causal_lm("llama", vocab, eos_token_id=tiny_tokenizer.eos_token_id).config
    keep = KeepPlan.from_counts(counts, config)
    curve = AcceptanceCurve(
        ks=[16, 64, vocab],
        tau=[2.0, 3.0, 4.0],
        match_rate=[0.3, 0.5, 0.7],
        gamma=5,
        positions=100,
        sequences=4,
        plan_fingerprint=keep.fingerprint,
    )

    def costs(row_ms: float) -> CostModel:
        full = 100.0 + row_ms * vocab
        return CostModel(
            5,
            vocab,
            target_token_ms=50.0,
            verify_round_ms=60.0,
            draft_round_full_ms=full,
            draft_round_ref_ms=100.0 + 64 * row_ms,
            ref_k=64,
            draft_row_ms=row_ms,
        )

    free_head = plan(counts, config, objective=Speedup(curve, costs(0.0)), k_min=16, min_coverage=0.5, progress=False)
    summary = summarize(free_head, config, alpha=0.5)
    assert not summary["trimming_pays"] and summary["advice"].startswith("trimming does not pay here")
    costly = plan(counts, config, objective=Speedup(curve, costs(5.0)), k_min=16, min_coverage=0.5, progress=False)
    summary = summarize(costly, config, alpha=0.5)
    assert summary["trimming_pays"] and summary["k"] < vocab and summary["predicted_gain_vs_untrimmed"] > 0
    model = costs(5.0)
    assert model.seconds(10, 40) == pytest.approx(40 * 50.0 / 1000)  # target alone: prefill fits left at 0
    assert model.seconds(10, 40, rounds=10, k=64) == pytest.approx(10 * (100.0 + 64 * 5.0 + 60.0) / 1000)
    model.ref_context, model.context_slopes = 30.0, {"target": 0.1, "verify": 0.2, "draft": 0.3}
    assert model.seconds(10, 40) == pytest.approx(40 * 50.0 / 1000)  # mean context 10 + 40 / 2 = the profiled one
    longer = model.seconds(110, 40, rounds=10, k=64)  # 100 tokens more context: each round 100 * (0.2 + 0.3) dearer
    assert longer == pytest.approx(10 * (100.0 + 64 * 5.0 + 60.0 + 50.0) / 1000)


def test_cli_trim_keeps_the_checkpoint_dtype_and_pads_to_the_target(tiny_tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    vocab = len(tiny_tokenizer)
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in demo_chats(40)))
    tiny_tokenizer.save_pretrained(tmp_path / "draft")
    draft = tiny_causal_lm("qwen2", vocab, eos_token_id=tiny_tokenizer.eos_token_id).to(torch.bfloat16)
    draft.save_pretrained(tmp_path / "draft")
    tiny_causal_lm("qwen2", vocab + 64).config.save_pretrained(tmp_path / "target")  # a padded vocabulary
    assert (
        main(["count", "--data", str(data), "--tokenizer", str(tmp_path / "draft"), "--out", str(tmp_path / "c.json")])
        == 0
    )
    args = ["trim", "--draft", str(tmp_path / "draft"), "--counts", str(tmp_path / "c.json"), "--k", "64"]
    extra = ["--no-context-tokens", "--fast-path", "static"]
    assert main([*args, "--target", str(tmp_path / "target"), *extra, "--out", str(tmp_path / "t")]) == 0
    trimmed = AutoModelForCausalLM.from_pretrained(tmp_path / "t", dtype="auto")
    assert trimmed.config.fast_path == "static"
    assert trimmed.dtype == torch.bfloat16  # not upcast to float32
    assert trimmed.config.vocab_size == vocab + 64 and not trimmed.config.context_tokens
    assert trimmed.config.trimming["base_model"] == "draft"  # the folder's name, not this machine's path


def test_profile_times_sliding_window_drafts_past_their_window(tiny_tokenizer):
    """Timing rounds crop the cache back to the prompt: sliding-window layers past their window must allow it."""
    from hf_vocabtrim.measure.profiling import decode_step, time_decode

    draft = tiny_causal_lm("gemma3_text", len(tiny_tokenizer))
    window = draft.config.sliding_window
    timed = time_decode({"full": decode_step(draft)}, draft.config, prompt=window + 8, steps=4, rounds=2)
    assert len(timed["full"]["samples_ms"]) == 2 and timed["full"]["ms"] > 0
