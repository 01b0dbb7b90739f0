"""The version A/B benchmark (``benchmarks/version_ab.py``) runs end to end on tiny models: two worker processes
(here both the current code; the real run gives one an older release's environment), rounds interleaved per prompt,
the lossless check, and the JSON fields the regression issue reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.selection.keep_plan import KeepPlan
from hf_vocabtrim.tiny import demo_chats, tiny_causal_lm

pytestmark = pytest.mark.slow  # three processes load tiny models: ~30 s

ROOT = Path(__file__).resolve().parents[1]


def test_version_ab_smoke(tiny_tokenizer, tmp_path: Path) -> None:
    for name, seed in (("target", 1), ("draft", 0)):
        tiny_tokenizer.save_pretrained(tmp_path / name)
        model = tiny_causal_lm("qwen2", len(tiny_tokenizer), seed=seed, eos_token_id=tiny_tokenizer.eos_token_id)
        model.save_pretrained(tmp_path / name)
    counts = count_tokens(tiny_tokenizer, demo_chats(40), progress=False)
    KeepPlan.from_counts(counts, model.config).save(tmp_path / "plan" / "keep_plan.safetensors")
    (tmp_path / "prompts.json").write_text(json.dumps(["def add(a, b):", "Sort a list.", "Hello"]))
    command = [sys.executable, str(ROOT / "benchmarks" / "version_ab.py"), "--old-python", sys.executable]
    command += ["--target", str(tmp_path / "target"), "--draft", str(tmp_path / "draft")]
    command += ["--plans", f"small={tmp_path / 'plan'}:64", f"large={tmp_path / 'plan'}:256"]
    command += ["--prompts-file", str(tmp_path / "prompts.json"), "--prompts", "3", "--rounds", "2"]
    command += ["--max-new-tokens", "12", "--threads", "1", "--with-target", "--out", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "v03_vs_v04.json").read_text())
    assert report["cpu"] and report["versions"]["v03"]["version"] == report["versions"]["v04"]["version"]
    assert (tmp_path / "out" / "v03_vs_v04.png").stat().st_size > 0
    for name, k in (("small", 64), ("large", 256)):
        entry = report["plans"][name]
        assert entry["k"] == k
        for key in ("v03_vs_untrimmed_median", "v04_vs_untrimmed_median", "v04_vs_v03_median"):
            assert entry[key] > 0, key
        lo, hi = entry["v04_vs_v03_ci95"]
        assert lo <= entry["v04_vs_v03_median"] <= hi
        assert entry["draft_step_ms_v03"] > 0 and entry["draft_step_ms_v04"] > 0
        assert entry["tau_v03"] == entry["tau_v04"]  # the same code on both sides: the same acceptance
    rows = report["per_prompt"]
    assert set(rows) == {f"{v}/{d}" for v in ("v03", "v04") for d in ("untrimmed", "small", "large")}
    assert list(report["outputs"]) == [f"prompts.json[{i}]" for i in range(3)]  # one output per prompt: lossless
    new_tokens = {key: [row["new_tokens"] for row in rows[key]] for key in rows}
    assert all(counts == [r["new_tokens"] for r in report["target_alone"]] for counts in new_tokens.values())
    assert all(len(row["seconds"]) == 2 for key in rows for row in rows[key])
    assert len(report["target_alone"]) == 3 and not (tmp_path / "out" / "v03_vs_v04.partial.json").exists()
