"""Coverage curves, TPE under a coverage floor vs the exact optimum, the report files and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hf_vocabtrim.cli import main
from hf_vocabtrim.counting import count_tokens
from hf_vocabtrim.coverage import coverage_curve, coverage_of, kept_ids_for_k, rank_ids
from hf_vocabtrim.optimize import Curves, choose_k, exact_optimum, pareto_front
from hf_vocabtrim.planning import load_draft_config, plan
from hf_vocabtrim.tiny import demo_chats, tiny_causal_lm


def test_rank_and_coverage():
    counts = np.array([0, 5, 0, 3, 3, 9, 0, 0])
    order = rank_ids(counts, forced=[6])
    assert order.tolist() == [6, 5, 1, 3, 4, 0, 2, 7]  # forced first, then count desc, ties by lower id
    curve = coverage_curve(counts, order)
    assert curve[0] == 0 and curve[1] == 0 and curve[2] == pytest.approx(9 / 20) and curve[-1] == 1.0
    assert kept_ids_for_k(order, 3, num_forced=1).tolist() == [1, 5, 6]
    assert coverage_of([5, 1], counts) == pytest.approx(14 / 20)
    with pytest.raises(ValueError, match="out of range"):
        kept_ids_for_k(order, 9)
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
    summary = plan(
        counts,
        load_draft_config(tmp_path / "draft" / "config.json"),
        tmp_path / "out",
        alpha=0.7,
        min_coverage=0.98,
        k_min=8,
        n_trials=25,
        heldout=held,
        progress=False,
    )
    for name in ("summary.json", "trials.json", "pareto.json", "trim_report.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    for key in (
        "k",
        "coverage",
        "latency_reduction",
        "utility",
        "exact_k",
        "exact_utility",
        "heldout_coverage",
        "tpe_gap",
        "flops_full",
    ):
        assert key in on_disk
    assert on_disk == json.loads(json.dumps(summary))
    assert summary["coverage"] >= 0.98 and summary["k"] < len(tiny_tokenizer)


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
    assert trimmed.config.trimming["coverage"] == pytest.approx(summary["coverage"])
    # failures exit non-zero with a message
    assert (
        main(
            [
                "optimize",
                "--counts",
                str(tmp_path / "counts.json"),
                "--draft-config",
                str(tmp_path / "draft"),
                "--min-coverage",
                "1.01",
                "--out",
                str(tmp_path / "bad"),
            ]
        )
        == 2
    )
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


def test_cli_profile_acceptance_and_speedup_objective(tiny_tokenizer, tmp_path):
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in demo_chats(40)))
    tiny_tokenizer.save_pretrained(tmp_path / "draft")
    tiny_causal_lm("llama", len(tiny_tokenizer), eos_token_id=tiny_tokenizer.eos_token_id).save_pretrained(
        tmp_path / "draft"
    )
    draft = str(tmp_path / "draft")
    assert main(["count", "--data", str(data), "--tokenizer", draft, "--out", str(tmp_path / "counts.json")]) == 0
    assert (
        main(
            [
                "profile",
                "--draft",
                draft,
                "--ks",
                "64",
                "256",
                "--rounds",
                "2",
                "--steps",
                "2",
                "--out",
                str(tmp_path / "fit.json"),
            ]
        )
        == 0
    )
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert [p["k"] for p in fit["points"]] == [64, 256, len(tiny_tokenizer)] and "b_ms_per_row" in fit
    assert (
        main(
            [
                "acceptance",
                "--target",
                draft,
                "--draft",
                draft,
                "--data",
                str(data),
                "--counts",
                str(tmp_path / "counts.json"),
                "--ks",
                "32",
                "128",
                "--gamma",
                "3",
                "--max-examples",
                "8",
                "--out",
                str(tmp_path / "acc.json"),
            ]
        )
        == 0
    )
    acc = json.loads((tmp_path / "acc.json").read_text())
    assert acc["ks"][-1] == len(tiny_tokenizer) and acc["match_rate"][-1] == 1.0  # draft == target: all match
    assert acc["tau"][0] <= acc["tau"][-1] <= 4.0
    assert {"target_ms", "verify_ms", "draft_ms"} <= set(acc["timing"])
    assert (
        main(
            [
                "optimize",
                "--counts",
                str(tmp_path / "counts.json"),
                "--draft-config",
                draft,
                "--k-min",
                "16",
                "--min-coverage",
                "0.9",
                "--trials",
                "20",
                "--objective",
                "speedup",
                "--acceptance",
                str(tmp_path / "acc.json"),
                "--latency-fit",
                str(tmp_path / "fit.json"),
                "--out",
                str(tmp_path / "opt"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "opt" / "summary.json").read_text())
    assert summary["objective"] == "speedup" and set(summary["objectives"]) == {"utility", "speedup"}
    assert summary["exact_objective_value"] >= summary["predicted_speedup_full_vocab"] - 1e-9  # V is a candidate
    assert summary["objective_value"] == pytest.approx(summary["predicted_speedup"])
