"""The prepared GPU benchmarks run end to end on the CPU (``--smoke``: tiny shapes, the CPU twin of capture).

CI has no GPU; this keeps the one device call (``benchmarks/gpu_run.sh``) from rotting between device sessions, and
checks the JSON fields the README and the issue tracker read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # two subprocesses, tiny models: under a minute

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_gpu_assisted_smoke(tmp_path: Path) -> None:
    _run("gpu_assisted.py", tmp_path)
    report = json.loads((tmp_path / "gpu_assisted.json").read_text())
    assert (tmp_path / "gpu_assisted.png").stat().st_size > 0
    assert report["device"].startswith("cpu")
    assert report["lossless"]["prompts"] == 4 and report["lossless"]["all_equal"] is True
    assert "sync_free" in report  # None on the CPU: the check needs CUDA's sync-debug mode
    k = report["draft_step"]["tiny-draft"]["k"]  # 8,192 on real shapes; V / 8 on the tiny one
    n = report["settings"]["context_ids"][0]
    steps = report["draft_step_ms"]["tiny-draft"]
    for mode in ("eager", "captured"):
        for key in (f"{mode}_full", f"{mode}_k{k}", f"{mode}_k{k}_ctx{n}"):
            assert steps[key] > 0, key
    rounds = report["round_ms"]["tiny"]
    for name in ("eager_untrimmed", "captured_untrimmed", "captured_static_k8192", "captured_context"):
        assert rounds[name]["draft"] > 0 and rounds[name]["verify"] > 0, name
    predicted = report["predicted_tok_s"]["tiny"]
    for prompt_set in ("humaneval", "spec_bench"):
        for name in ("target", "eager_untrimmed", "captured_untrimmed", "captured_context"):
            assert predicted[prompt_set][name] > 0, (prompt_set, name)


def test_gpu_eagle3_step_smoke(tmp_path: Path) -> None:
    _run("gpu_eagle3_step.py", tmp_path)
    report = json.loads((tmp_path / "eagle3_step.json").read_text())
    for batch in ("1", "16"):
        times = report["step_us"][batch]
        assert set(times) == {"1024", "512", "256"} and all(value > 0 for value in times.values())
        assert report["speedup_vs_first_k"][batch]["1024"] == 1.0
    assert 0 < report["lm_head_share_flops"]["256"] < report["lm_head_share_flops"]["1024"] < 1


def test_gpu_run_says_in_one_line_when_the_stack_does_not_import(tmp_path: Path) -> None:
    """A device image whose huggingface_hub is older than transformers 5.24 wants fails at `import transformers`:
    the script stops before any benchmark with one line saying so (it used to run both into the same error)."""
    fake = tmp_path / "python"
    fake.write_text(
        "#!/bin/sh\necho 'ImportError: huggingface-hub>=1.31.0,<3.0 is required for a normal functioning of this "
        "module, but found huggingface-hub==0.36.0.' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake), "OUT": str(tmp_path / "out")}
    result = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_run.sh")], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("gpu_run:")]
    assert "huggingface-hub>=1.31.0" in lines[0] and ".whl" in lines[1]
    assert not (tmp_path / "out" / "gpu_assisted.json").exists()
