"""The vLLM plugin in vLLM's CPU build: it can never stop vLLM (every start-up step guarded), the CPU expand-kernel
fix replaces only a kernel that fails its probe, broken folders fail early with one line naming the field and the
fix, and what vLLM alone refuses or never tried: a padded-vocabulary pair, ``vllm serve`` with an OpenAI client,
tensor parallel 2, and the local-argmax reduction (``get_top_tokens``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from hf_vocabtrim import commands
from hf_vocabtrim.engines.vllm_serve import CPU_ENV, speculative_config

from . import vllm_models
from .test_vllm import _counts_with, _serve, _used_ids_k

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

SERVE_ONE = """
import json, os, sys
os.environ.update({env})
breakage = sys.argv[1]
import vllm
if breakage == "registry_raises":
    def refuse(*args, **kwargs):
        raise RuntimeError("registry API drift")
    vllm.ModelRegistry.register_model = refuse
elif breakage == "registry_missing":
    vllm.ModelRegistry = object()  # what `from vllm import ModelRegistry` finds: no registry API at all
elif breakage == "package_import_fails":
    sys.modules["hf_vocabtrim.model.configuration_trimmed_draft"] = None  # importing it raises ImportError
from vllm import LLM, SamplingParams
from vllm.inputs import TokensPrompt
llm = LLM(model={target!r}, dtype="float32", enforce_eager=True, max_model_len=256)
params = SamplingParams(temperature=0, max_tokens={tokens}, ignore_eos=True, detokenize=False)
out = llm.generate([TokensPrompt(prompt_token_ids={prompt!r})], params, use_tqdm=False)
print("OUTPUT", json.dumps(list(out[0].outputs[0].token_ids)))
"""


@pytest.mark.parametrize("breakage", ["registry_raises", "registry_missing", "package_import_fails"])
def test_a_failing_plugin_never_stops_vllm(models, vllm_python, breakage, tmp_path):
    """vLLM calls `register()` unguarded in every process: with the registry API raising or missing, or this
    package's own import failing inside it, `register()` logs one warning (package and vLLM versions) and vLLM serves
    an ordinary model in that same process."""
    env = {**CPU_ENV, "HF_HUB_OFFLINE": "1"}
    script = tmp_path / "serve_one.py"
    script.write_text(SERVE_ONE.format(env=env, target=models["target"], prompt=models["prompts"][0],
                                       tokens=vllm_models.NEW_TOKENS))  # fmt: skip
    run = subprocess.run([vllm_python, str(script), breakage], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    output = next(line for line in run.stdout.splitlines() if line.startswith("OUTPUT "))
    assert json.loads(output.removeprefix("OUTPUT ")) == models["replies"][0]
    said = (run.stdout + run.stderr).splitlines()  # vLLM's logger writes to stdout
    warnings = [line for line in said if "hf-vocabtrim" in line and "plugin step" in line]
    assert len(warnings) == 1 and "vLLM 0." in warnings[0] and "serves every other model" in warnings[0]


EXPAND = """
import torch
import vllm._C  # vLLM's CPU ops, which the kernel calls (loaded by vLLM's platform at start-up)
from vllm.utils import cpu_triton_utils as kernels
from vllm.platforms import current_platform
from hf_vocabtrim.engines import vllm_plugin
original = kernels._expand_kernel_impl
broken = vllm_plugin.expand_kernel_is_broken(original)
replaced = vllm_plugin.fix_cpu_expand_kernel()
out = torch.full((5,), -1.0)
ends = torch.tensor([2, 5], dtype=torch.int32)
kernels._expand_kernel_impl(out, torch.tensor([3.0, 4.0]), ends, 4, 9, 16, "a later argument")
by_name = torch.full((3,), -1.0)
kernels._expand_kernel_impl(output=by_name, input_val=torch.tensor([4.0, 1.0]), cu_num_tokens=torch.tensor([1, 3]),
                            replace_from=4, replace_to=9, MAX_NUM_TOKENS=16)
def correct(*args, **kwargs):
    vllm_plugin.expand_reference(*args, **kwargs)
kernels._expand_kernel_impl = correct
kept_correct = (not vllm_plugin.fix_cpu_expand_kernel()) and kernels._expand_kernel_impl is correct
kernels._expand_kernel_impl = original
current_platform.is_cpu = lambda: False
kept_off_cpu = (not vllm_plugin.fix_cpu_expand_kernel()) and kernels._expand_kernel_impl is original
import json
print(json.dumps([broken, replaced, out.tolist(), by_name.tolist(), kept_correct, kept_off_cpu]))
"""


def test_the_expand_kernel_fix_replaces_only_a_broken_kernel(vllm_python):
    """vLLM 0.32.0's CPU expand kernel leaves float outputs unwritten: the probe finds it and the replacement fills
    them (positionally with an extra trailing argument, or by name); a correct kernel, or a platform other than the
    CPU, is left as it is."""
    run = subprocess.run([vllm_python, "-c", EXPAND], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    broken, replaced, out, by_name, kept_correct, kept_off_cpu = json.loads(run.stdout.strip().splitlines()[-1])
    assert broken and replaced  # the bug is there in 0.32.0 (vLLM issue #55005)
    assert out == [3.0, 3.0, 9.0, 9.0, 9.0]  # request 0's 3.0 on 2 tokens; request 1's 4.0 (= replace_from) -> 9.0
    assert by_name == [9.0, 1.0, 1.0]
    assert kept_correct and kept_off_cpu


def _broken_copy(source: str, folder: Path, name: str) -> Path:
    out = folder / f"broken_{name}"
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(source, out)
    return out


def test_broken_folders_fail_before_the_draft_loads_with_one_line(models, vllm_python, tmp_path, capsys):
    """`vocabtrim check` and vLLM (through the plugin) give the same one line, naming the field and the fix; vLLM
    gives it before the draft's weights load (the draft is never built), as the last line `vllm_serve` reports."""
    good = tmp_path / "good"
    argv = ["trim", "--draft", models["draft"], "--counts", models["counts"], "--k", "64", "--out", str(good)]
    assert commands.main(argv) == 0
    config = json.loads((good / "config.json").read_text())
    broken = _broken_copy(str(good), tmp_path, "k")
    (broken / "config.json").write_text(json.dumps({**config, "draft_vocab_size": 63}))
    capsys.readouterr()
    assert commands.main(["check", str(good), "--target", models["target"]]) == 0
    assert commands.main(["check", str(broken)]) == 1
    said = capsys.readouterr().out
    assert "kept_ids: 64 ids but draft_vocab_size is 63" in said and "vocabtrim trim" in said
    with pytest.raises(RuntimeError) as err:
        _serve(vllm_python, models, speculative_config("draft_model", broken))
    last = str(err.value).splitlines()[-1]
    assert last.startswith("hf-vocabtrim: ") and str(broken) in last and "draft_vocab_size is 63" in last
    # before anything is built: the model class raises from the folder alone (a config vLLM could not build from)
    build = subprocess.run([vllm_python, "-c", BUILD_BEFORE_LOAD, str(broken)], capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    assert build.stdout.strip().splitlines()[-1].startswith(f"ValueError hf-vocabtrim: {broken}: kept_ids: 64 ids")


BUILD_BEFORE_LOAD = """
import sys
from types import SimpleNamespace
from transformers import AutoConfig
from hf_vocabtrim.engines import vllm_plugin
vllm_plugin.register_config()
from hf_vocabtrim.engines.vllm_model import TrimmedDraftForVLLM
folder = sys.argv[1]
config = SimpleNamespace(model_config=SimpleNamespace(hf_config=AutoConfig.from_pretrained(folder), model=folder))
try:
    TrimmedDraftForVLLM(vllm_config=config)  # no vLLM config to build a model from: only a pre-flight error stops first
except Exception as err:
    print(type(err).__name__, err)
"""


def _padded_target(source: str, out: Path, extra: int = 64) -> str:
    """The tiny target with its vocabulary padded by ``extra`` rows (zero embedding and head rows), as Qwen2.5-7B+
    pads 151,643 ids to 152,064 while Qwen2.5-0.5B/1.5B pad to 151,936."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source)
    vocab = model.config.vocab_size
    model.resize_token_embeddings(vocab + extra, mean_resizing=False)
    for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
        weight.data[vocab:] = 0
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)
    return str(out)


def test_a_padded_vocabulary_pair_vllm_refuses_is_served_once_trimmed_with_target(models, vllm_python, tmp_path):
    """Target V = draft V + 64 (padding): vLLM refuses the untrimmed pair; the draft trimmed with `--target` takes
    the target's V and is served losslessly, accepting exactly what the untrimmed draft accepts with the unpadded
    target (same logits on every real id) when it keeps every id the replies use and the draft proposed."""
    padded = _padded_target(models["target"], tmp_path / "target_padded")
    with pytest.raises(RuntimeError, match="same vocabulary size"):
        _serve(vllm_python, {**models, "target": padded}, speculative_config("draft_model", models["draft"]))
    plain = _serve(vllm_python, models, speculative_config("draft_model", models["draft"]), record_drafts=True)
    from hf_vocabtrim import TokenCounts

    replies = TokenCounts.load(models["counts"])
    counts = _counts_with(replies, plain["groups"][0]["drafted_ids"], tmp_path / "needed.json")
    from transformers import AutoConfig, GenerationConfig

    from hf_vocabtrim import KeepPlan

    keep = KeepPlan.from_counts(TokenCounts.load(counts), AutoConfig.from_pretrained(models["draft"]),
                                GenerationConfig.from_pretrained(models["draft"]))  # fmt: skip
    k = _used_ids_k(keep, TokenCounts.load(counts))
    trimmed = tmp_path / "trimmed_for_padded"
    argv = ["trim", "--draft", models["draft"], "--counts", counts, "--k", str(k), "--target", padded]
    assert commands.main([*argv, "--out", str(trimmed)]) == 0
    assert json.loads((trimmed / "config.json").read_text())["text_config"]["vocab_size"] == 512 + 64
    served = _serve(vllm_python, {**models, "target": padded}, speculative_config("draft_model", trimmed))
    group, base = served["groups"][0], plain["groups"][0]
    assert group["outputs"] == base["outputs"] == models["replies"]
    assert group["metrics"]["per_position"] == base["metrics"]["per_position"]
    assert base["metrics"]["accepted"] > base["metrics"]["drafts"]


def test_tensor_parallel_2_and_local_argmax(models, vllm_python, tmp_path):
    """Two tensor-parallel ranks on this machine (one thread each): the trimmed draft's k-row head sharded like
    vLLM's own, lossless and accepting what one rank accepts; and vLLM's local-argmax reduction
    (`use_local_argmax_reduction`: `get_top_tokens`, no V-wide logits) with and without context tokens, lossless and
    accepting exactly what the V-wide logits accept."""
    out = tmp_path / "trimmed"
    argv = ["trim", "--draft", models["draft"], "--counts", models["counts"], "--k", "40", "--context-tokens"]
    assert commands.main([*argv, "--out", str(out)]) == 0
    static = tmp_path / "trimmed_static"
    argv = ["trim", "--draft", models["draft"], "--counts", models["counts"], "--k", "40", "--no-context-tokens"]
    assert commands.main([*argv, "--out", str(static)]) == 0
    runs = {}
    for name, folder in (("context", out), ("static", static)):
        spec = speculative_config("draft_model", folder)
        runs[name] = _serve(vllm_python, models, spec)
        runs[f"{name}_argmax"] = _serve(vllm_python, models, {**spec, "use_local_argmax_reduction": True})
    runs["tp2"] = _serve(vllm_python, models, speculative_config("draft_model", out),
                         engine_args={"tensor_parallel_size": 2, "distributed_executor_backend": "mp"},
                         env={"VLLM_ENABLE_V1_MULTIPROCESSING": "1", "VLLM_CPU_OMP_THREADS_BIND": "0|1"})  # fmt: skip
    metrics = {name: run["groups"][0]["metrics"] for name, run in runs.items()}
    for name, run in runs.items():
        assert run["groups"][0]["outputs"] == models["replies"], name
    assert metrics["context_argmax"]["per_position"] == metrics["context"]["per_position"]
    assert metrics["static_argmax"]["per_position"] == metrics["static"]["per_position"]
    assert metrics["context"]["acceptance_length"] > metrics["static"]["acceptance_length"]
    # with more than one rank the plugin serves the static kept set (context rows are not sharded): one rank static
    assert metrics["tp2"]["per_position"] == metrics["static"]["per_position"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CLIENT = """
import json, sys
from openai import OpenAI
port, model, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
client = OpenAI(base_url=f"http://127.0.0.1:{{port}}/v1", api_key="none")
prompts = json.loads(sys.argv[4])
texts = []
for prompt in prompts:
    reply = client.completions.create(model=model, prompt=prompt, max_tokens=n, temperature=0,
                                      extra_body={{"ignore_eos": True, "skip_special_tokens": False}})
    texts.append(reply.choices[0].text)
chat = client.chat.completions.create(model=model, messages=json.loads(sys.argv[5]), max_tokens=n, temperature=0,
                                      extra_body={{"ignore_eos": True, "skip_special_tokens": False}})
print(json.dumps({{"completions": texts, "chat": chat.choices[0].message.content}}))
"""


def _vllm_serve(vllm_python: str, target: str, draft: str, port: int, log: Path) -> subprocess.Popen:
    """vLLM's OpenAI server. `vllm serve` is its CLI for the same server; vllm-cpu 0.32.0's `vllm` command fails
    before parsing anything (it looks up the version of a distribution named "vllm"; the CPU build installs as
    "vllm-cpu"), so the server's module entry point is started."""
    spec = json.dumps(speculative_config("draft_model", draft))
    argv = [vllm_python, "-m", "vllm.entrypoints.openai.api_server", "--model", target, "--host", "127.0.0.1",
            "--port", str(port), "--dtype", "float32", "--max-model-len", "256", "--enforce-eager",
            "--speculative-config", spec]  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind", "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_vllm_serve_with_an_openai_client(models, vllm_python, tmp_path):
    """vLLM's OpenAI server (what `vllm serve TARGET --speculative-config {draft_model: TRIMMED}` starts; see
    `_vllm_serve`) with its default multiprocess engine (API server and engine core in separate processes, the plugin
    in each) on 127.0.0.1, queried by the `openai` client: greedy completions and a chat equal the target alone's
    replies; the spec-decode counters read from /metrics; the server stopped by the test. A broken trimmed folder
    makes the server exit non-zero with this package's one line."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(models["target"])
    out = tmp_path / "trimmed"
    argv = ["trim", "--draft", models["draft"], "--counts", models["counts"], "--k", "48", "--out", str(out)]
    assert commands.main(argv) == 0
    port, log = _free_port(), tmp_path / "serve.log"
    server = _vllm_serve(vllm_python, models["target"], str(out), port, log)
    try:
        deadline = time.monotonic() + 420
        while True:
            assert server.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(2)
        held = [json.loads(line) for line in Path(models["held"]).read_text().splitlines()]
        chat = [m for m in held[0]["messages"] if m["role"] != "assistant"][:1]
        prompts = models["prompts"][:3]
        client = subprocess.run([vllm_python, "-c", CLIENT.format(), str(port), models["target"],
                                 str(vllm_models.NEW_TOKENS), json.dumps(prompts), json.dumps(chat)],
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert client.returncode == 0, client.stderr[-3000:]
        answers = json.loads(client.stdout.strip().splitlines()[-1])
        expected = [tokenizer.decode(reply) for reply in models["replies"][:3]]
        assert answers["completions"] == expected
        assert answers["chat"] == expected[0]  # prompt 0 is held chat 0 rendered with the chat template
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            metrics = answer.read().decode()
        counters = {line.split("{")[0].split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("vllm:spec_decode_num_")}  # fmt: skip
        assert counters["vllm:spec_decode_num_drafts_total"] > 0
        assert counters["vllm:spec_decode_num_accepted_tokens_total"] > 0
    finally:
        _stop(server)
    assert server.poll() is not None
    broken = _broken_copy(str(out), tmp_path, "serve")
    (broken / "config.json").write_text(json.dumps({**json.loads((out / "config.json").read_text()),
                                                    "draft_vocab_size": 47}))  # fmt: skip
    failing = _vllm_serve(vllm_python, models["target"], str(broken), _free_port(), tmp_path / "broken.log")
    try:
        failing.wait(timeout=420)
    finally:
        _stop(failing)
    said = (tmp_path / "broken.log").read_text()
    assert failing.returncode != 0
    assert f"hf-vocabtrim: {broken}: kept_ids: 48 ids but draft_vocab_size is 47" in said
