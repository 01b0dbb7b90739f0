"""Push with the script and load from the Hub, through huggingface_hub's real HTTP client and a local Hub server.

Each Hub-side step runs in a subprocess with ``HF_ENDPOINT`` pointing at the server (huggingface_hub reads it at
import) and its own empty ``HF_HOME`` (so every download goes through HTTP into a fresh cache).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hf_vocabtrim.tiny import build_tiny_tokenizer, demo_chats, tiny_causal_lm
from tests.hub_server import LocalHub

pytestmark = pytest.mark.slow  # subprocesses and HTTP: about a minute
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "hub_scripts" / "push_trimmed_draft.py"
TOKEN = "hf_local_test_token"


def _env(hub: LocalHub, home: Path, token: str | None = TOKEN) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
            "NO_PROXY": "127.0.0.1",
            "no_proxy": "127.0.0.1",
        }
    )
    if token:
        env["HF_TOKEN"] = token
    return env


def _draft_and_data(tmp: Path) -> list[str]:
    return ["--draft", str(tmp / "draft"), "--data", str(tmp / "chats.jsonl")]


def _push(hub: LocalHub, tmp: Path, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(hub, tmp / f"home_push_{len(hub.state.log)}", token),
        cwd=tmp,
    )


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hub")
    tokenizer = build_tiny_tokenizer()
    target = tiny_causal_lm("llama", len(tokenizer), seed=0, eos_token_id=tokenizer.eos_token_id)
    target.save_pretrained(tmp / "target")
    tokenizer.save_pretrained(tmp / "target")
    target.save_pretrained(tmp / "draft")  # a self-draft: same weights
    tokenizer.save_pretrained(tmp / "draft")
    (tmp / "draft" / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny draft\n")
    data = tmp / "chats.jsonl"
    data.write_text("".join(json.dumps(c) + "\n" for c in demo_chats(60)))
    return tmp


LOAD = textwrap.dedent(
    """
    import json, sys, torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    repo, target_dir, revision, remote = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "remote"
    if remote:
        draft = AutoModelForCausalLM.from_pretrained(repo, revision=revision, trust_remote_code=True)
    else:
        from hf_vocabtrim import TrimmedDraftModel
        draft = TrimmedDraftModel.from_pretrained(repo, revision=revision)
    target = AutoModelForCausalLM.from_pretrained(target_dir)
    tok = AutoTokenizer.from_pretrained(target_dir)
    ok = True
    for text in ["How do I sort lists in Python?", "How do I parse files in Python?"]:
        x = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                    return_dict=True, return_tensors="pt")
        kw = dict(input_ids=x["input_ids"], attention_mask=x["attention_mask"], max_new_tokens=20, do_sample=False)
        ok &= bool(torch.equal(target.generate(**kw), target.generate(**kw, assistant_model=draft)))
    print(json.dumps({"type": type(draft).__name__, "module": type(draft).__module__, "equal": ok,
                      "k": int(draft.kept_ids.numel())}))
    """
)


def _load(hub: LocalHub, tmp: Path, repo: str, revision: str, remote: bool, token: str | None = TOKEN) -> dict:
    home = tmp / f"home_load_{len(hub.state.log)}"
    assert not home.exists()  # a fresh cache
    result = subprocess.run(
        [sys.executable, "-c", LOAD, repo, str(tmp / "target"), revision, "remote" if remote else "local"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(hub, home, token),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_push_then_load_from_fresh_cache_and_generate(assets):
    with LocalHub(TOKEN) as hub:
        result = _push(
            hub,
            assets,
            *_draft_and_data(assets),
            "--target",
            str(assets / "target"),
            "--repo-id",
            "me/tiny-trimmed",
            "--min-coverage",
            "0.95",
            "--trials",
            "20",
            "--k-min",
            "8",
            "--out",
            str(assets / "out"),
        )
        assert result.returncode == 0, result.stderr[-4000:]
        files = hub.state.repos["me/tiny-trimmed"]["branches"]["main"]
        assert {
            "README.md",
            "config.json",
            "model.safetensors",
            "generation_config.json",
            "modeling_trimmed_draft.py",
            "configuration_trimmed_draft.py",
            "tokenizer.json",
        } <= set(files)
        card = files["README.md"].decode()
        assert "library_name: transformers" in card and "license: apache-2.0" in card
        # a local draft folder is no Hub id: no base_model metadata, and no path of this machine anywhere public
        assert "base_model:" not in card and "| calibration data | chats.jsonl |" in card
        for public in ("README.md", "config.json"):
            assert str(assets) not in files[public].decode(), public
        assert "trust_remote_code=True" in card and "TrimmedDraftModel.from_pretrained" in card
        assert '"method": "draft_model"' in card and "hf-vocabtrim[vllm]" in card  # how to serve it in vLLM
        assert "vocabtrim trim --target TARGET" in card  # the padded-vocabulary fix
        k = json.loads(files["config.json"])["draft_vocab_size"]
        for remote in (False, True):
            loaded = _load(hub, assets, "me/tiny-trimmed", "main", remote)
            assert loaded["equal"] and loaded["k"] == k and loaded["type"] == "TrimmedDraftModel"
            assert loaded["module"].startswith("transformers_modules" if remote else "hf_vocabtrim")
        # two fresh caches, two HTTP downloads of the weights (the revision is resolved to its commit first)
        downloads = [path for method, path, status in hub.state.log if method == "GET" and status == 200]
        assert any("/me/tiny-trimmed/resolve/" in path and path.endswith("/model.safetensors") for path in downloads), (
            hub.state.log
        )


def test_private_branch_and_explicit_k(assets):
    with LocalHub(TOKEN) as hub:
        result = _push(
            hub,
            assets,
            *_draft_and_data(assets),
            "--k",
            "64",
            "--base-model",
            "tiny/base-draft",
            "--repo-id",
            "me/tiny-branch",
            "--private",
            "--revision",
            "k64",
            "--commit-message",
            "k=64 variant",
            "--out",
            str(assets / "out_branch"),
        )
        assert result.returncode == 0, result.stderr[-4000:]
        repo = hub.state.repos["me/tiny-branch"]
        assert (
            repo["private"]
            and "config.json" in repo["branches"]["k64"]
            and "config.json" not in repo["branches"]["main"]
        )
        assert "base_model: tiny/base-draft" in repo["branches"]["k64"]["README.md"].decode()
        assert _load(hub, assets, "me/tiny-branch", "k64", remote=False)["k"] == 64
        home = assets / "home_anon"
        anon = subprocess.run(
            [sys.executable, "-c", LOAD, "me/tiny-branch", str(assets / "target"), "k64", "local"],
            capture_output=True,
            text=True,
            timeout=600,
            env=_env(hub, home, token=None),
        )
        assert anon.returncode != 0  # private: no token, no download


def test_model_push_to_hub_includes_code_files(assets, tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from transformers import AutoModelForCausalLM
        from hf_vocabtrim import TrimmedDraftModel
        draft = AutoModelForCausalLM.from_pretrained(sys.argv[1])
        TrimmedDraftModel.from_draft(draft, range(3, 100)).push_to_hub("me/pushed")
        """
    )
    with LocalHub(TOKEN) as hub:
        result = subprocess.run(
            [sys.executable, "-c", code, str(assets / "draft")],
            capture_output=True,
            text=True,
            timeout=600,
            env=_env(hub, tmp_path / "home"),
        )
        assert result.returncode == 0, result.stderr[-4000:]
        files = hub.state.repos["me/pushed"]["branches"]["main"]
        assert {"modeling_trimmed_draft.py", "configuration_trimmed_draft.py", "model.safetensors"} <= set(files)
        assert "auto_map" in json.loads(files["config.json"])


def test_bad_input_fails_before_any_upload(assets, tmp_path):
    other = build_tiny_tokenizer(vocab_size=600)
    tiny_causal_lm("llama", len(other), seed=0).save_pretrained(tmp_path / "other_target")
    other.save_pretrained(tmp_path / "other_target")
    base = ["--draft", str(assets / "draft"), "--counts", "unused.json", "--k", "64", "--dry-run"]
    with LocalHub(TOKEN) as hub:
        cases = [
            ([*base[:-1], "--repo-id", "not a valid/name!!"], TOKEN, "invalid Hub repo id"),
            ([*base[:-1], "--repo-id", "me/x"], None, "no Hugging Face token"),
            (
                [
                    "--draft",
                    str(assets / "draft"),
                    "--data",
                    str(assets / "chats.jsonl"),
                    "--k",
                    "64",
                    "--target",
                    str(tmp_path / "other_target"),
                    "--repo-id",
                    "me/x",
                ],
                TOKEN,
                "tokenizer mismatch",
            ),
        ]
        for args, token, message in cases:
            result = _push(hub, assets, *args, token=token)
            assert result.returncode == 2 and message in result.stderr, result.stderr[-3000:]
        assert hub.state.log == []  # nothing reached the Hub
    from hf_vocabtrim.hub import check_trimmed_folder

    with pytest.raises(ValueError, match="not a trimmed draft"):
        check_trimmed_folder(assets / "target")


def test_failed_upload_keeps_the_folder_and_says_so(assets):
    with LocalHub("the-real-token") as hub:  # the client's token is refused
        result = _push(
            hub,
            assets,
            *_draft_and_data(assets),
            "--k",
            "64",
            "--repo-id",
            "me/refused",
            "--out",
            str(assets / "out_refused"),
        )
        assert result.returncode == 1
        assert "upload failed" in result.stderr and "is complete" in result.stderr
    from hf_vocabtrim.hub import check_trimmed_folder

    assert check_trimmed_folder(assets / "out_refused")["draft_vocab_size"] == 64


def test_push_an_eagle3_head_folder_after_linting_it(assets, tmp_path):
    from hf_vocabtrim import commands
    from tests.test_eagle3 import counts_file, write_head

    head = write_head(tmp_path / "head", "speculators")
    counts_file(tmp_path / "counts.json")
    trimmed = tmp_path / "trimmed"
    argv = ["eagle3", "--draft", str(head), "--counts", str(tmp_path / "counts.json"), "--k", "40"]
    assert commands.main([*argv, "--out", str(trimmed)]) == 0
    broken = write_head(tmp_path / "broken", "eagle", edit=lambda config, tensors: tensors.pop("d2t"))
    with LocalHub(TOKEN) as hub:
        refused = _push(hub, tmp_path, "--folder", str(broken), "--repo-id", "me/broken")
        assert refused.returncode == 2 and "d2t is missing" in refused.stderr and hub.state.log == []
        result = _push(hub, tmp_path, "--folder", str(trimmed), "--repo-id", "me/eagle3-trimmed")
        assert result.returncode == 0, result.stderr[-3000:]
        files = hub.state.repos["me/eagle3-trimmed"]["branches"]["main"]
        assert {"config.json", "model.safetensors", "README.md"} <= set(files)
        assert json.loads(files["config.json"])["draft_vocab_size"] == 40
