"""What a new user touches first: one-line errors for bad inputs, ranges checked by the parser, --help with defaults,
no local path in shared files, the report PNG, the demo's last line; and the guard set of `optimize`."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from safetensors import safe_open

from hf_vocabtrim import commands
from hf_vocabtrim.commands import trim as trim_command
from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.selection.acceptance import AcceptanceCurve
from hf_vocabtrim.selection.guard import Guard
from hf_vocabtrim.selection.keep_plan import KeepPlan
from hf_vocabtrim.selection.planning import Utility, plan
from hf_vocabtrim.selection.report import summarize
from hf_vocabtrim.tiny import demo_chats, tiny_causal_lm


def _run(capsys, argv: list[str]) -> tuple[int, str]:
    """(exit status, stderr) of the CLI, parser errors included."""
    try:
        status = commands.main(argv)
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    return status, capsys.readouterr().err


@pytest.fixture
def workspace(tiny_tokenizer, tmp_path):
    """A draft folder (tiny qwen2 + tokenizer), calibration chats and general "guard" chats."""
    tiny_tokenizer.save_pretrained(tmp_path / "draft")
    tiny_causal_lm("qwen2", len(tiny_tokenizer), eos_token_id=tiny_tokenizer.eos_token_id).save_pretrained(
        tmp_path / "draft"
    )
    code = [c for c in demo_chats(80, seed=1)]
    (tmp_path / "code.jsonl").write_text("".join(json.dumps(c) + "\n" for c in code))
    general = [
        {"messages": [{"role": "user", "content": f"Tell me about {w}."}, {"role": "assistant", "content": text}]}
        for w, text in [
            ("rivers", "Rivers carry water from mountains to the sea; many cities grew beside them."),
            ("bread", "Bread is flour, water, salt and yeast, kneaded, proofed and baked until golden."),
            ("owls", "Owls hunt at night; their soft feathers make their flight almost silent."),
            ("tea", "Tea leaves are steeped in hot water; green and black tea come from one plant."),
        ]
        * 5
    ]
    (tmp_path / "general.jsonl").write_text("".join(json.dumps(c) + "\n" for c in general))
    return tmp_path


def test_bad_data_files_say_so_in_one_line(capsys, workspace):
    (workspace / "empty.jsonl").write_text("")
    (workspace / "no_reply.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    tokenizer = str(workspace / "draft")
    for name, message in (("empty.jsonl", "is empty"), ("no_reply.jsonl", "has assistant turns")):
        status, err = _run(capsys, ["count", "--data", str(workspace / name), "--tokenizer", tokenizer, "--out", "x"])
        lines = [line for line in err.splitlines() if line.startswith("vocabtrim")]
        assert status != 0 and len(lines) == 1 and name in lines[0] and message in lines[0], err
        assert "Traceback" not in err


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--min-coverage", "1.5"),
        ("--min-coverage", "-0.1"),
        ("--alpha", "2"),
        ("--trials", "0"),
        ("--k-min", "0"),
        ("--k-max", "-5"),
        ("--max-guard-loss", "1.0"),
    ],
)
def test_out_of_range_numbers_are_rejected_by_the_parser(capsys, flag, value):
    status, err = _run(capsys, ["optimize", "--counts", "c.json", "--draft-config", "d", "--out", "o", flag, value])
    assert status == 2 and len(err.strip().splitlines()) == 1
    assert flag in err and "out of range: allowed" in err and "infeasible" not in err


def test_trim_checks_k_against_the_plan_before_loading_weights(capsys, workspace, monkeypatch):
    counts = workspace / "counts.json"
    tokenizer = str(workspace / "draft")
    assert (
        commands.main(
            ["count", "--data", str(workspace / "code.jsonl"), "--tokenizer", tokenizer, "--out", str(counts)]
        )
        == 0
    )

    def no_weights(*args, **kwargs):
        raise AssertionError("weights loaded before --k was checked")

    monkeypatch.setattr(trim_command, "load_causal_lm", no_weights)
    capsys.readouterr()
    args = ["trim", "--draft", str(workspace / "draft"), "--counts", str(counts), "--out", str(workspace / "t")]
    status, err = _run(capsys, [*args, "--k", "999999"])
    assert status == 2 and "k=999999 is out of range" in err and len(err.strip().splitlines()) == 1


def test_help_shows_defaults_and_every_flag_has_a_help_line(capsys):
    parser = commands.build_parser()
    assert "speculative decoding" in parser.format_help() and "command line:" not in parser.format_help()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert {"count", "optimize", "trim", "profile", "acceptance", "export", "import", "demo"} <= set(subparsers.choices)
    for name, sub in subparsers.choices.items():
        text = sub.format_help()
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings} has no help"
            if action.default not in (None, False, argparse.SUPPRESS) and action.option_strings:
                shown = action.default
                if isinstance(action, argparse.BooleanOptionalAction):
                    shown = "on" if action.default else "off"
                assert f"(default: {shown})" in " ".join(text.split()), (name, action.dest)


def test_shared_files_hold_no_local_path(workspace, tiny_tokenizer):
    """count -> optimize (with a guard) -> trim with absolute paths: none of them in what a user may share."""
    draft, counts = str(workspace / "draft"), str(workspace / "counts.json")
    assert commands.main(["count", "--data", str(workspace / "code.jsonl"), "--tokenizer", draft, "--out", counts]) == 0
    optimize = ["optimize", "--counts", counts, "--draft-config", draft, "--min-coverage", "0.5", "--trials", "10"]
    guard = ["--guard-data", str(workspace / "general.jsonl"), "--tokenizer", draft]
    assert commands.main([*optimize, *guard, "--out", str(workspace / "plan")]) == 0
    trim = ["trim", "--draft", draft, "--plan", str(workspace / "plan"), "--out", str(workspace / "trimmed")]
    assert commands.main(trim) == 0
    shared = [workspace / "counts.json", workspace / "trimmed" / "config.json"]
    shared += [workspace / "plan" / name for name in ("summary.json", "trials.json", "pareto.json")]
    for path in shared:
        text = path.read_text()
        assert str(workspace) not in text and "/tmp" not in text, path
    with safe_open(str(workspace / "plan" / "keep_plan.safetensors"), framework="numpy") as handle:
        metadata = json.dumps(handle.metadata())
    assert str(workspace) not in metadata and "/tmp" not in metadata
    summary = json.loads((workspace / "plan" / "summary.json").read_text())
    assert summary["guard"]["source"] == "general.jsonl" and summary["counts"]["source"] == "code.jsonl"


def _plans(tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    calibration = count_tokens(tiny_tokenizer, demo_chats(60), progress=False, source="code")
    general_rows = [
        {"messages": [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": t}]}
        for t in ("Rivers reach the sea.", "Owls fly at night quietly.", "Tea is steeped in hot water.") * 3
    ]
    general = count_tokens(tiny_tokenizer, general_rows, progress=False, source="general")
    config = tiny_causal_lm("llama", vocab, eos_token_id=tiny_tokenizer.eos_token_id).config
    return calibration, general, config


def test_coverage_guard_raises_k_and_says_it_decided(tiny_tokenizer, tmp_path):
    calibration, general, config = _plans(tiny_tokenizer)
    common = {"k_min": 8, "min_coverage": 0.5, "progress": False, "n_trials": 40}
    free = plan(calibration, config, objective=Utility(0.3), **common)
    guard = Guard(source="general", max_loss=0.1, counts=general)
    guarded = plan(calibration, config, objective=Utility(0.3), guard=guard, **common)
    floor = guard.constraint(guarded.keep_plan).values
    assert floor[free.choice.exact_k] < 0.9 <= floor[guarded.choice.k]  # unguarded pick fails the guard
    assert guarded.choice.k > free.choice.k and guarded.choice.k_without_guard == free.choice.exact_k
    summary = summarize(guarded, config, alpha=0.3)
    assert summary["decided_by"] == "guard" and summary["guard"]["decided_by_guard"]
    assert summary["guard"]["value"] >= 0.9 > summary["guard"]["value_without_guard"]
    assert all(t["guard_coverage"] >= 0.9 for t in guarded.choice.trials if t["feasible"])
    loose = plan(calibration, config, objective=Utility(0.3), guard=Guard("general", 0.9, counts=general), **common)
    assert summarize(loose, config, alpha=0.3)["decided_by"] == "objective" and loose.choice.k == free.choice.k
    with pytest.raises(ValueError, match="guard_coverage=1 is infeasible: the highest guard coverage reachable"):
        plan(calibration, config, objective=Utility(0.3), guard=Guard("general", 0.0, counts=general), **{
            **common, "min_coverage": 0.0, "k_max": 16})  # fmt: skip


def test_tau_guard_from_an_acceptance_curve(tiny_tokenizer):
    calibration, _, config = _plans(tiny_tokenizer)
    vocab = len(tiny_tokenizer)
    keep = KeepPlan.from_counts(calibration, config)
    ks = [16, 64, 128, 256, vocab]
    curve = AcceptanceCurve(
        ks=ks, tau=[2.0, 3.0, 3.5, 3.9, 4.0], match_rate=[0.2, 0.4, 0.5, 0.6, 0.6], gamma=5, positions=100,
        sequences=4, plan_fingerprint=keep.fingerprint, tau_context=[3.0, 3.9, 3.95, 4.0, 4.0],
    )  # fmt: skip
    common = {"k_min": 16, "min_coverage": 0.0, "progress": False, "n_trials": 40}
    static = plan(calibration, config, objective=Utility(0.1), guard=Guard("g", 0.03, acceptance=curve), **common)
    ratio = np.asarray([3.9, 4.0]) / 4.0
    assert static.choice.k >= 256 > 128 and ratio.min() >= 0.97  # tau(256)/tau(V) = 0.975: the first k that holds
    context = Guard("g", 0.03, acceptance=curve, context_tokens=True)
    with_context = plan(calibration, config, objective=Utility(0.1), guard=context, **common)
    assert with_context.choice.k < static.choice.k  # context ids hold tau at a smaller k
    other = AcceptanceCurve(**{**curve.as_dict(), "plan_fingerprint": "another"})
    with pytest.raises(ValueError, match="another keep order"):
        plan(calibration, config, objective=Utility(0.1), guard=Guard("g", 0.03, acceptance=other), **common)
    with pytest.raises(ValueError, match="exactly one"):
        Guard("g", 0.03)
    with pytest.raises(ValueError, match="max_loss"):
        Guard("g", 1.5, acceptance=curve)


def test_cli_guard_prints_when_it_decided_and_the_png_reads(capsys, workspace):
    draft, counts = str(workspace / "draft"), str(workspace / "counts.json")
    assert commands.main(["count", "--data", str(workspace / "code.jsonl"), "--tokenizer", draft, "--out", counts]) == 0
    args = ["optimize", "--counts", counts, "--draft-config", draft, "--min-coverage", "0.5", "--alpha", "0.3"]
    args += ["--k-min", "8", "--guard-data", str(workspace / "general.jsonl"), "--tokenizer", draft]
    assert commands.main([*args, "--max-guard-loss", "0.05", "--out", str(workspace / "plan")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((workspace / "plan" / "summary.json").read_text())
    assert summary["decided_by"] == "guard" and "not the objective, set k" in out
    assert (workspace / "plan" / "trim_report.png").stat().st_size > 10_000


def test_report_figure_labels_every_axis_and_keeps_legends_off_the_curves(tiny_tokenizer, tmp_path, monkeypatch):
    import matplotlib.figure

    calibration, general, config = _plans(tiny_tokenizer)
    planned = plan(
        calibration, config, objective=Utility(0.3), guard=Guard("general", 0.1, counts=general), k_min=8,
        min_coverage=0.5, progress=False, n_trials=20,
    )  # fmt: skip
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: figures.append(self))
    from hf_vocabtrim.selection.report import write_report

    write_report(planned, tmp_path, config, alpha=0.3)
    (figure,) = figures
    for axes in figure.axes:
        assert axes.get_ylabel(), axes.get_title()
    left = figure.axes[0]
    legend = left.get_legend()
    labels = [text.get_text() for text in legend.get_texts()]
    assert any(label.startswith("TPE pick") for label in labels) and any(
        label.startswith("exact optimum") for label in labels
    )
    markers = {line.get_label(): line.get_marker() for line in left.get_lines()}
    tpe = next(v for k, v in markers.items() if k.startswith("TPE pick"))
    exact = next(v for k, v in markers.items() if k.startswith("exact optimum"))
    assert tpe != exact  # distinguishable even when they coincide
    for handle, line_label in zip(legend.legend_handles, labels):  # the legend's colours are the curves'
        match = [line for line in left.get_lines() if line.get_label() == line_label]
        if match and hasattr(handle, "get_color"):
            assert handle.get_color() == match[0].get_color()
    figure.canvas.draw()
    box, axes_box = legend.get_window_extent(), left.get_window_extent()
    assert box.y1 <= axes_box.y0 + 1  # the legend sits below the panel, off the curves


def test_cli_tau_guard_measured_with_the_models(capsys, workspace, tiny_tokenizer):
    """--guard-data with --target/--draft: tau on the guard chats from one teacher-forced pass of each model."""
    target = tiny_causal_lm("qwen2", len(tiny_tokenizer), seed=4, eos_token_id=tiny_tokenizer.eos_token_id)
    target.save_pretrained(workspace / "target")
    draft, counts = str(workspace / "draft"), str(workspace / "counts.json")
    assert commands.main(["count", "--data", str(workspace / "code.jsonl"), "--tokenizer", draft, "--out", counts]) == 0
    args = ["optimize", "--counts", counts, "--draft-config", draft, "--min-coverage", "0.5", "--k-min", "8"]
    args += ["--guard-data", str(workspace / "general.jsonl"), "--target", str(workspace / "target"), "--draft", draft]
    assert commands.main([*args, "--context-tokens", "--trials", "10", "--out", str(workspace / "plan")]) == 0
    guard = json.loads((workspace / "plan" / "summary.json").read_text())["guard"]
    assert guard["kind"] == "tau" and guard["source"] == "general.jsonl" and "with context ids" in guard["what"]
    assert guard["value"] >= guard["floor"] == pytest.approx(0.97)
    status, err = _run(
        capsys, ["optimize", "--counts", counts, "--draft-config", draft, "--target", draft, "--out", "x"]
    )
    assert status == 2 and "pass --guard-data too" in err
