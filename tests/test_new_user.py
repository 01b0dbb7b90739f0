"""What a new user hit on 0.3, each fixed and kept fixed: --help that repeats or invents defaults, no --version, Hub
errors for mistyped local paths, a data file passed as counts, an empty reply called "no assistant turns", a counts
error worded as a plan error, ``"coverage": null``, and a README snippet that did not run as written."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_vocabtrim import __version__, commands
from hf_vocabtrim.tiny import build_tiny_tokenizer, demo_chats, tiny_causal_lm

ROOT = Path(__file__).resolve().parents[1]


def _run(capsys, argv: list[str]) -> tuple[int, str, str]:
    try:
        status = commands.main(argv)
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture
def draft_folder(tiny_tokenizer, tmp_path):
    tiny_tokenizer.save_pretrained(tmp_path / "draft")
    model = tiny_causal_lm("qwen2", len(tiny_tokenizer), eos_token_id=tiny_tokenizer.eos_token_id)
    model.save_pretrained(tmp_path / "draft")
    (tmp_path / "chats.jsonl").write_text("".join(json.dumps(c) + "\n" for c in demo_chats(40, seed=1)))
    return tmp_path


def test_help_shows_each_default_once_and_none_for_required_flags():
    parser = commands.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        text = " ".join(sub.format_help().split())
        assert "(default: None)" not in text, name
        assert "(default: False)" not in text, name
        for action in sub._actions:
            if action.help in (None, argparse.SUPPRESS):
                continue
            shown = " ".join(sub._get_formatter()._expand_help(action).split()) if action.option_strings else ""
            assert shown.count("default") <= 1, (name, action.option_strings, shown)
            if action.required:
                assert "default" not in shown, (name, action.option_strings, shown)


def test_every_optional_flag_says_its_default():
    """Each optional flag that takes a value shows its default, or "(default: not set)"; switches are on/off."""
    parser = commands.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            switch = isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction))
            if switch or action.required or not action.option_strings:
                continue
            shown = " ".join(sub._get_formatter()._expand_help(action).split())
            assert "default" in shown, (name, action.option_strings, shown)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["count", "--help"], ["check", "--help"]])
def test_the_cli_answers_without_importing_torch_or_transformers(argv):
    """`vocabtrim --help`, `--version` and a command's `--help` answer at once: nothing imports torch or transformers
    (`import hf_vocabtrim` registers the trimmed draft with transformers only once transformers is imported)."""
    code = (
        "import sys\nfrom hf_vocabtrim.commands import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
        "    pass\nprint('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "usage: vocabtrim" in run.stdout or "hf-vocabtrim" in run.stdout, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "HEAVY []"


def test_importing_the_package_registers_the_trimmed_draft_when_transformers_loads():
    code = (
        "import sys, hf_vocabtrim\nassert 'transformers' not in sys.modules\n"
        "from transformers import AutoConfig, AutoModelForCausalLM\n"
        "from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING\n"
        "config = AutoConfig.for_model('trimmed_draft')\n"
        "print(type(config).__name__, MODEL_FOR_CAUSAL_LM_MAPPING[type(config)].__name__)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "TrimmedDraftConfig TrimmedDraftModel"


def test_trim_fast_path_choices_are_the_configs():
    from hf_vocabtrim.model.configuration_trimmed_draft import FAST_PATHS

    parser = commands.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in subparsers.choices["trim"]._actions if "--fast-path" in a.option_strings)
    assert tuple(action.choices) == FAST_PATHS


def test_version(capsys):
    status, out, _ = _run(capsys, ["--version"])
    assert status == 0 and out.strip() == f"hf-vocabtrim {__version__}"
    installed = subprocess.run([sys.executable, "-m", "hf_vocabtrim", "--version"], capture_output=True, text=True)
    assert installed.stdout.strip() == f"hf-vocabtrim {__version__}"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["count", "--data", "{chats}", "--tokenizer", "./no_such_dir", "--out", "c.json"], "./no_such_dir: no such"),
        (["count", "--data", "{chats}", "--tokenizer", "/tmp/x/y", "--out", "c.json"], "/tmp/x/y: no such"),
        (["trim", "--draft", "./nope", "--counts", "c.json", "--out", "t"], "./nope: no such"),
        (["trim", "--draft", "{notamodel}", "--tokenizer", "{draft}", "--counts", "c.json", "--out", "t"], "no model"),
        (["count", "--data", "{chats}", "--tokenizer", "{notamodel}", "--out", "c.json"], "holds no tokenizer"),
    ],
)
def test_a_mistyped_path_or_a_folder_that_is_no_model_in_one_line(argv, message, draft_folder, capsys, monkeypatch):
    monkeypatch.chdir(draft_folder)
    (draft_folder / "notamodel").mkdir()
    (draft_folder / "notamodel" / "notes.txt").write_text("not a model")
    places = {"chats": str(draft_folder / "chats.jsonl"), "notamodel": "notamodel", "draft": "draft"}
    status, _, err = _run(capsys, [arg.format(**places) for arg in argv])
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "Repo id" not in err and "sentencepiece" not in err


def test_data_passed_as_counts_and_empty_replies_say_what_they_are(draft_folder, capsys):
    status, _, err = _run(
        capsys,
        ["optimize", "--counts", str(draft_folder / "chats.jsonl"), "--draft-config", str(draft_folder / "draft"),
         "--out", str(draft_folder / "plan")],
    )  # fmt: skip
    assert status == 2 and "is not a counts file" in err and "Extra data" not in err
    empty = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}
    (draft_folder / "empty_reply.jsonl").write_text(json.dumps(empty) + "\n")
    status, _, err = _run(
        capsys,
        ["count", "--data", str(draft_folder / "empty_reply.jsonl"), "--tokenizer", str(draft_folder / "draft"),
         "--out", str(draft_folder / "c.json")],
    )  # fmt: skip
    assert status == 2 and "1 of the 1 conversations have assistant turns, but every assistant turn is empty" in err


def test_trim_names_the_counts_tokenizer_and_prints_no_null_coverage(draft_folder, capsys):
    other = build_tiny_tokenizer(vocab_size=400)
    other.save_pretrained(draft_folder / "other_tokenizer")
    counts = str(draft_folder / "other.json")
    assert commands.main(["count", "--data", str(draft_folder / "chats.jsonl"), "--tokenizer",
                          str(draft_folder / "other_tokenizer"), "--out", counts]) == 0  # fmt: skip
    capsys.readouterr()
    status, _, err = _run(
        capsys, ["trim", "--draft", str(draft_folder / "draft"), "--counts", counts, "--out", str(draft_folder / "t")]
    )
    assert status == 2 and "these counts were made with tokenizer" in err and "keep plan" not in err
    counts = str(draft_folder / "counts.json")
    assert commands.main(["count", "--data", str(draft_folder / "chats.jsonl"), "--tokenizer",
                          str(draft_folder / "draft"), "--out", counts]) == 0  # fmt: skip
    plan = str(draft_folder / "plan")
    assert commands.main(["optimize", "--counts", counts, "--draft-config", str(draft_folder / "draft"),
                          "--min-coverage", "0.5", "--trials", "8", "--out", plan]) == 0  # fmt: skip
    capsys.readouterr()
    status, out, _ = _run(capsys, ["trim", "--draft", str(draft_folder / "draft"), "--plan", plan,
                                   "--out", str(draft_folder / "t")])  # fmt: skip
    shown = json.loads(out.strip().splitlines()[-1])
    assert status == 0 and "coverage" not in shown and shown["k"] > 0


def _readme_use_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("\n## Use\n") :]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_the_readme_use_snippet_runs_as_written(draft_folder, tiny_tokenizer, monkeypatch, capsys):
    """The README's first snippet, with its Hub ids pointed at tiny local models and its plan made by the commands
    the README gives just before it."""
    snippet = _readme_use_snippet()
    ids = sorted(set(re.findall(r'"(Qwen/[^"]+)"', snippet)))
    assert ids, "the snippet names its models"
    target = tiny_causal_lm("qwen2", len(tiny_tokenizer), seed=3, eos_token_id=tiny_tokenizer.eos_token_id)
    for hub_id in ids:  # the target, the draft and the tokenizer
        folder = draft_folder / hub_id.replace("/", "__")
        (target if "1.5B" in hub_id else tiny_causal_lm("qwen2", len(tiny_tokenizer), seed=0)).save_pretrained(folder)
        tiny_tokenizer.save_pretrained(folder)
        snippet = snippet.replace(f'"{hub_id}"', repr(str(folder)))
    monkeypatch.chdir(draft_folder)
    assert commands.main(["count", "--data", "chats.jsonl", "--tokenizer", "draft", "--out", "counts.json"]) == 0
    assert commands.main(["optimize", "--counts", "counts.json", "--draft-config", "draft", "--min-coverage", "0.5",
                          "--trials", "8", "--out", "plan"]) == 0  # fmt: skip
    capsys.readouterr()
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["out"].shape[1] > scope["inputs"]["input_ids"].shape[1]
    reference = scope["target"].generate(**scope["inputs"], max_new_tokens=128)
    assert (scope["out"] == reference).all()  # lossless, as the snippet says


def _readme_vllm_demo_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("<!-- vllm-demo-snippet -->") :]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.mark.slow
@pytest.mark.vllm
def test_the_readme_vllm_snippet_serves_the_demo_as_written(vllm_python, tmp_path):
    """`vocabtrim demo`, then the README's vLLM snippet saved as `serve_demo.py` beside `vocabtrim_demo/` and run in
    vLLM's CPU build as written: it serves the demo's target with its trimmed draft, prints the target's own greedy
    replies (transformers' greedy output of the same chats) and the spec-decode counters."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    demo = subprocess.run([sys.executable, "-m", "hf_vocabtrim", "demo"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "Passing `generation_config` together with" not in demo.stderr  # no deprecation warning in the demo
    (tmp_path / "serve_demo.py").write_text(_readme_vllm_demo_snippet())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_")}
    run = subprocess.run([vllm_python, "serve_demo.py"], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                         env={**env, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    lines = run.stdout.strip().splitlines()
    counters = {line.split()[0]: line.split(maxsplit=1)[1] for line in lines if line.startswith("vllm:spec_decode")}
    assert float(counters["vllm:spec_decode_num_drafts"]) > 0 and "vllm:spec_decode_num_accepted_tokens" in counters
    target = AutoModelForCausalLM.from_pretrained(tmp_path / "vocabtrim_demo" / "target").eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "vocabtrim_demo" / "target")
    scope: dict = {}
    questions_line = next(line for line in _readme_vllm_demo_snippet().splitlines() if "questions = " in line)
    exec(questions_line.strip(), scope)
    expected = []
    for question in scope["questions"]:
        inputs = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                               return_dict=True, return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            out = target.generate(**inputs, max_new_tokens=40, do_sample=False)
        expected.append(repr(tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)))
    printed = [line for line in lines if line.startswith(("'", '"'))]  # the replies (vLLM logs to stdout too)
    assert printed == expected
