"""``engines.vllm_serve`` and ``vocabtrim eagle3 --verify-with`` without an engine: what a user sees when vLLM fails,
hangs or disagrees (the engine itself is served in ``tests/test_vllm.py``)."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from hf_vocabtrim import commands
from hf_vocabtrim.engines import vllm_serve
from hf_vocabtrim.tiny import demo_chats

from .test_eagle3 import counts_file, write_head


def _script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_a_failed_engine_says_its_exit_status_and_last_lines(tmp_path):
    python = _script(tmp_path / "python", 'for i in $(seq 1 40); do echo "log line $i" >&2; done\nexit 3\n')
    with pytest.raises(RuntimeError, match="exit status 3") as err:
        vllm_serve.run_plan({"target": "t"}, python=python)
    said = str(err.value).splitlines()
    assert said[-1] == "log line 40" and "log line 21" in said and "log line 20" not in said  # the last 20 lines


def test_a_hung_engine_is_killed_with_its_children(tmp_path):
    pid_file = tmp_path / "child.pid"
    python = _script(tmp_path / "python", f"sleep 120 &\necho $! > {pid_file}\nwait\n")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="did not finish in 2 s"):
        vllm_serve.run_plan({"target": "t"}, python=python, timeout=2)
    assert time.monotonic() - started < 30
    child = int(pid_file.read_text())
    for _ in range(50):  # the engine's own child processes go with it (its process group)
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the engine's child process survived the timeout")


@pytest.fixture
def verify_args(tmp_path):
    head = write_head(tmp_path / "head", "eagle")
    counts_file(tmp_path / "counts.json")
    chats = tmp_path / "chats.jsonl"
    chats.write_text("".join(json.dumps({"messages": c["messages"]}) + "\n" for c in demo_chats(4)))
    argv = ["eagle3", "--draft", str(head), "--counts", str(tmp_path / "counts.json"), "--k", "40"]
    return [*argv, "--out", str(tmp_path / "out"), "--verify-with", str(tmp_path / "target"), "--data", str(chats)]


@pytest.mark.parametrize(
    ("trimmed", "original", "status", "said"),
    [(True, True, 0, "lossless on 4 chats"), (False, True, 1, "NOT lossless"), (False, False, 3, "inconclusive")],
)
def test_verify_with_exit_status(verify_args, monkeypatch, capsys, trimmed, original, status, said):
    """0 lossless; 1 the trimmed head is not; 3 neither is the original (vLLM's numerics, not the trim)."""
    counters = {"acceptance_length": 2.0}
    result = {"engine": {"vllm": "x"}, "prompts": 4, "lossless": trimmed, "original_lossless": original,
              "original": counters, "trimmed": counters, "acceptance_ratio": 1.0}  # fmt: skip
    monkeypatch.setattr(vllm_serve, "require_vllm", lambda flag: None)
    monkeypatch.setattr(vllm_serve, "verify_heads", lambda *args, **kwargs: result)
    assert commands.main(verify_args) == status
    assert said in capsys.readouterr().err


def test_verify_with_when_vllm_fails_or_the_head_is_dflash(verify_args, tmp_path, monkeypatch, capsys):
    def fails(*args, **kwargs):
        raise RuntimeError("vLLM failed (target, exit status 1):\nout of memory")

    monkeypatch.setattr(vllm_serve, "require_vllm", lambda flag: None)
    monkeypatch.setattr(vllm_serve, "verify_heads", fails)
    assert commands.main(verify_args) == 1
    err = capsys.readouterr().err
    assert "--verify-with: vLLM failed" in err and "out of memory" in err and "Traceback" not in err
    assert (tmp_path / "out" / "config.json").exists()  # the head is written; only the check did not run
    verify_args[verify_args.index("--draft") + 1] = str(write_head(tmp_path / "dflash", "dflash"))
    verify_args[verify_args.index("--out") + 1] = str(tmp_path / "out_dflash")
    assert commands.main(verify_args) == 2
    err = capsys.readouterr().err
    assert "DFlash" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "out_dflash").exists()
