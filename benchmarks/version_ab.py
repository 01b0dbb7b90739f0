"""Version A/B of ``generate(assistant_model=trimmed)``: the trimmed draft built and run by an older release of
hf-vocabtrim (its own environment, e.g. 0.3.0 installed from its commit) against the current code, on the same
machine in one run.

Each version runs in its own worker process (``--worker``: this file run by that environment's Python, so that
``import hf_vocabtrim`` is that version's package). A worker loads the real pair, trims the draft with its own
``trim_draft`` for every ``--plans`` entry (context tokens on, as the committed plans were measured) and answers
timing requests one at a time; the workers never run at the same time. Per prompt and round the driver runs every
(version, draft) pair, the untrimmed draft included in each version, in an order rotated per prompt and round
(drift hits every configuration). Every output must equal the first (and the target alone's with ``--with-target``):
greedy speculative decoding is lossless.

Per run, besides the wall time, the worker times inside ``generate()`` (hooks identical in both versions):
the drafting phase of each round (``AssistedCandidateGenerator.get_candidates``) and every forward of the draft, so a
difference is located: in the draft's decode step (a forward of one token) or in the work around it.

Writes OUT/v03_vs_v04.json: per plan ``{k, v03_vs_untrimmed_median, v04_vs_untrimmed_median, v04_vs_v03_median,
v04_vs_v03_ci95, draft_step_ms_v03, draft_step_ms_v04}`` (median over prompts of per-prompt ratios of median seconds,
95% bootstrap interval over prompts), the control (untrimmed draft, current vs old environment: the noise floor),
the CPU model and both versions' commits.

    python benchmarks/version_ab.py --target DIR --draft DIR --old-python /path/venv-v03/bin/python \\
        --plans guarded=results/guard/optimize_guarded code=results/cpu_regression/optimize_code_speedup_context
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("v03", "v04")  # old, current (the JSON keys the regression issue asks for)


# ---------------------------------------------------------------------------------------------------- worker side
def _worker(args: argparse.Namespace) -> None:
    """Serve timing requests (JSON lines on stdin) with this environment's hf-vocabtrim; answers on stdout."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.generation.candidate_generator import AssistedCandidateGenerator

    import hf_vocabtrim

    try:  # 0.4+ layout
        from hf_vocabtrim.model import fast_path
        from hf_vocabtrim.model.trimming import trim_draft
        from hf_vocabtrim.selection.keep_plan import KeepPlan
    except ImportError:  # 0.3 layout
        from hf_vocabtrim.keep_plan import KeepPlan  # type: ignore[no-redef]
        from hf_vocabtrim.trimming import trim_draft  # type: ignore[no-redef]

        from hf_vocabtrim import fast_path  # type: ignore[no-redef]

    answer = sys.stdout
    sys.stdout = sys.stderr  # anything the libraries print goes to stderr; stdout carries the answers only
    torch.set_num_threads(args.threads)
    target = AutoModelForCausalLM.from_pretrained(args.target, dtype=torch.float32).eval()
    draft = AutoModelForCausalLM.from_pretrained(args.draft, dtype=torch.float32).eval()
    settings = {"num_assistant_tokens": args.gamma, "num_assistant_tokens_schedule": "constant"}
    settings["assistant_confidence_threshold"] = 0.0
    draft.generation_config.update(**settings)
    drafts: dict[str, Any] = {"untrimmed": draft}
    for spec in args.plans:
        name, folder, k = _plan_spec(spec)
        keep = KeepPlan.load(folder)
        drafts[name] = trim_draft(draft, keep, k, context_tokens=True, assistant_settings=settings).eval()

    forwards: list[tuple[int, float]] = []  # (input length, seconds) of each draft forward in the current run
    rounds: list[tuple[float, int]] = []  # (drafting seconds, proposals) of each round in the current run
    started: list[float] = []

    def before(module: Any, args_: Any, kwargs: dict[str, Any]) -> None:
        started.append(time.perf_counter())

    def after(module: Any, args_: Any, kwargs: dict[str, Any], output: Any) -> None:
        ids = kwargs.get("input_ids", args_[0] if args_ else None)
        forwards.append((int(ids.shape[-1]) if ids is not None else 0, time.perf_counter() - started.pop()))

    for model in drafts.values():
        model.register_forward_pre_hook(before, with_kwargs=True)
        model.register_forward_hook(after, with_kwargs=True)
    # not hf_vocabtrim's record_assisted: it moved and changed between releases; this timer is the same in both
    get_candidates = AssistedCandidateGenerator.get_candidates

    def timed_get_candidates(self: Any, input_ids: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        ids, logits = get_candidates(self, input_ids, **kwargs)
        rounds.append((time.perf_counter() - t0, int(ids.shape[-1] - input_ids.shape[-1])))
        return ids, logits

    AssistedCandidateGenerator.get_candidates = timed_get_candidates  # type: ignore[method-assign]

    def run(label: str, input_ids: list[int], max_new_tokens: int) -> dict[str, Any]:
        ids = torch.tensor([input_ids])
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        kwargs.update(max_new_tokens=max_new_tokens, do_sample=False)
        if label != "target":
            kwargs["assistant_model"] = drafts[label]
        forwards.clear()
        rounds.clear()
        t0 = time.perf_counter()
        with torch.inference_mode():
            output = target.generate(**kwargs)
        seconds = time.perf_counter() - t0
        steps = [s for n, s in forwards if n == 1]  # the draft's decode step: one token in, one proposal out
        return {
            "seconds": seconds,
            "output": output[0, len(input_ids) :].tolist(),
            "rounds": len(rounds),
            "proposals": sum(p for _, p in rounds),
            "drafting_seconds": sum(s for s, _ in rounds),
            "forward_seconds": sum(s for _, s in forwards),
            "decode_steps": len(steps),
            "decode_step_ms_median": 1000 * median(steps) if steps else None,
        }

    info = {
        "version": hf_vocabtrim.__version__,
        "source": _installed_from(),
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "threads": torch.get_num_threads(),
        "fast_path_modes": {name: fast_path.mode(m) for name, m in drafts.items() if name != "untrimmed"},
        "ks": {name: int(m.kept_ids.numel()) for name, m in drafts.items() if name != "untrimmed"},
    }
    print(json.dumps({"ready": info}), file=answer, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("stop"):
            break
        print(
            json.dumps(run(request["label"], request["input_ids"], request["max_new_tokens"])), file=answer, flush=True
        )


def _installed_from() -> str | None:
    """The local folder pip installed hf-vocabtrim from (its ``direct_url.json``), None if not from a folder."""
    from importlib.metadata import distribution

    url = json.loads(distribution("hf-vocabtrim").read_text("direct_url.json") or "{}").get("url", "")
    return url.removeprefix("file://") if url.startswith("file://") else None


def _plan_spec(spec: str) -> tuple[str, str, int]:
    """``name=FOLDER`` (k from FOLDER/summary.json) or ``name=FOLDER:K``."""
    name, _, rest = spec.partition("=")
    folder, _, k = rest.partition(":")
    if not name or not folder:
        raise SystemExit(f"--plans entry {spec!r}: expected name=FOLDER or name=FOLDER:K")
    return name, folder, int(k) if k else int(json.loads((Path(folder) / "summary.json").read_text())["k"])


# ---------------------------------------------------------------------------------------------------- driver side
class Worker:
    """One version's worker process; ``run`` sends one request and waits for its answer."""

    def __init__(self, python: str, args: argparse.Namespace) -> None:
        command = [python, str(Path(__file__).resolve()), "--worker", "--target", args.target, "--draft", args.draft]
        command += ["--threads", str(args.threads), "--gamma", str(args.gamma), "--plans", *args.plans]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the environment's own package only
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.info = self._read()["ready"]

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"worker {self.process.args[0]} exited with {self.process.wait()}")
        return json.loads(line)

    def run(self, label: str, input_ids: list[int], max_new_tokens: int) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"label": label, "input_ids": input_ids, "max_new_tokens": max_new_tokens}))
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            self.process.stdin.write(json.dumps({"stop": True}) + "\n")
            self.process.stdin.flush()
        self.process.wait(timeout=120)


def _commit(source: str | None) -> str | None:
    """The git commit checked out in ``source``, the folder a version was installed from."""
    if not source:
        return None
    result = subprocess.run(["git", "-C", source, "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def summarize(rows: dict[str, list[dict[str, Any]]], plans: list[str], ks: dict[str, int]) -> dict[str, Any]:
    """Per plan the paired ratios (median over prompts of per-prompt ratios of median seconds, 95% bootstrap CI)."""
    from spec_decode import paired_ratios  # tokens/s of its first rows over its second, per prompt

    def per_proposal_ms(version: str, label: str, key: str) -> float:
        prompts = rows[f"{version}/{label}"]
        return median([1000 * median(p[key]) / median(p["proposals"]) for p in prompts])

    def step_ms(version: str, label: str) -> float:
        return median([median(p["decode_step_ms"]) for p in rows[f"{version}/{label}"]])

    result: dict[str, Any] = {"plans": {}}
    for label in ["untrimmed", *plans]:
        entry: dict[str, Any] = {}
        if label != "untrimmed":
            entry["k"] = ks[label]
            for version in VERSIONS:
                ratio, ci = paired_ratios(rows[f"{version}/{label}"], rows[f"{version}/untrimmed"])
                entry[f"{version}_vs_untrimmed_median"] = ratio
                entry[f"{version}_vs_untrimmed_ci95"] = ci
        ratio, ci = paired_ratios(rows[f"v04/{label}"], rows[f"v03/{label}"])
        entry["v04_vs_v03_median"], entry["v04_vs_v03_ci95"] = ratio, ci
        for version in VERSIONS:
            entry[f"draft_step_ms_{version}"] = step_ms(version, label)
            entry[f"drafting_ms_per_proposal_{version}"] = per_proposal_ms(version, label, "drafting_seconds")
            entry[f"forward_ms_per_proposal_{version}"] = per_proposal_ms(version, label, "forward_seconds")
            entry[f"around_ms_per_proposal_{version}"] = (
                entry[f"drafting_ms_per_proposal_{version}"] - entry[f"forward_ms_per_proposal_{version}"]
            )
            prompts = rows[f"{version}/{label}"]
            tokens = sum(p["new_tokens"] for p in prompts)
            entry[f"tau_{version}"] = tokens / sum(median(p["rounds"]) for p in prompts)
        if label == "untrimmed":  # the same model code in both environments: the noise floor of v04_vs_v03
            result["control"] = {"untrimmed": entry}
        else:
            result["plans"][label] = entry
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", help="target folder (Qwen2.5-Coder-1.5B-Instruct)")
    parser.add_argument("--draft", help="draft folder (Qwen2.5-Coder-0.5B-Instruct)")
    parser.add_argument("--old-python", help="Python of the environment with the old release installed")
    parser.add_argument("--new-python", default=sys.executable, help="Python of the current code's environment")
    parser.add_argument(
        "--plans",
        nargs="+",
        help="name=FOLDER (an optimize output: keep_plan.safetensors and summary.json's k) or name=FOLDER:K",
    )
    parser.add_argument("--first-problem", type=int, default=82, help="first HumanEval problem (82: unused ones)")
    parser.add_argument("--prompts-file", help="a JSON list of user messages to use instead of HumanEval problems")
    parser.add_argument("--prompts", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3, help="runs of every configuration per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--gamma", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--with-target", action="store_true", help="time the target alone once per prompt (lossless)")
    parser.add_argument("--out", default=str(ROOT / "results" / "cpu_regression"))
    parser.add_argument("--report", help="print the table and draw the PNG of this v03_vs_v04.json (no runs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args)
        return
    if args.report:
        report = json.loads(Path(args.report).read_text())
        print_table(report)
        plot(report, Path(args.report).with_suffix(".png"))
        return
    missing = [name for name in ("target", "draft", "old_python", "plans") if not getattr(args, name)]
    if missing:
        parser.error(f"{', '.join('--' + name.replace('_', '-') for name in missing)} required (or --report JSON)")
    sys.path.insert(0, str(Path(__file__).parent))
    from spec_decode import humaneval, humaneval_chat
    from transformers import AutoTokenizer

    from hf_vocabtrim.hardware import cpu_model

    started = time.perf_counter()
    plans = [_plan_spec(spec)[0] for spec in args.plans]
    tokenizer = AutoTokenizer.from_pretrained(args.draft)
    if args.prompts_file:
        chats = [[{"role": "user", "content": text}] for text in json.loads(Path(args.prompts_file).read_text())]
        names = [f"{Path(args.prompts_file).name}[{i}]" for i in range(len(chats))][: args.prompts]
    else:
        problems = humaneval()[args.first_problem : args.first_problem + args.prompts]
        chats = [humaneval_chat(problem)[:1] for problem in problems]
        names = [f"HumanEval/{args.first_problem + i}" for i in range(len(chats))]
    prompts = [
        list(tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True)["input_ids"])
        for chat in chats[: args.prompts]
    ]
    workers: dict[str, Worker] = {}
    try:
        for version, python in zip(VERSIONS, (args.old_python, args.new_python)):
            workers[version] = Worker(python, args)  # one at a time: loading never overlaps
            print(f"{version}: {workers[version].info}", flush=True)
        for worker in workers.values():  # the first calls pay one-off costs
            for label in ["untrimmed", *plans]:
                worker.run(label, prompts[0], 4)
        ks = workers["v04"].info["ks"]
        if ks != workers["v03"].info["ks"]:
            raise SystemExit(f"the versions trimmed to different k: {workers['v03'].info['ks']} vs {ks}")
        configs = [(version, label) for label in ["untrimmed", *plans] for version in VERSIONS]
        rows: dict[str, list[dict[str, Any]]] = {f"{v}/{label}": [] for v, label in configs}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        target_rows = []
        outputs: dict[str, str] = {}  # per prompt, the one output every run gave (decoded)
        for index, input_ids in enumerate(prompts):
            reference = None
            if args.with_target:
                alone = workers["v04"].run("target", input_ids, args.max_new_tokens)
                reference = alone["output"]
                target_rows.append({"prompt": names[index], "seconds": alone["seconds"], "new_tokens": len(reference)})
            runs: dict[str, list[dict[str, Any]]] = {f"{v}/{label}": [] for v, label in configs}
            for repeat in range(args.rounds):
                shift = (index + repeat) % len(configs)
                for version, label in configs[shift:] + configs[:shift]:
                    result = workers[version].run(label, input_ids, args.max_new_tokens)
                    if reference is None:
                        reference = result["output"]
                    elif result["output"] != reference:
                        raise SystemExit(f"LOSSLESS CHECK FAILED: {version}/{label} differs on prompt {index}")
                    runs[f"{version}/{label}"].append(result)
            for key, results in runs.items():
                row = {"prompt": names[index], "new_tokens": len(results[0]["output"])}
                for field in ("seconds", "rounds", "proposals", "drafting_seconds", "forward_seconds"):
                    row[field] = [r[field] for r in results]
                row["decode_step_ms"] = [r["decode_step_ms_median"] for r in results]
                rows[key].append(row)
            outputs[names[index]] = tokenizer.decode(reference or [])
            line = ", ".join(f"{key} {median(rows[key][-1]['seconds']):.1f} s" for key in rows)
            print(f"{names[index]}: {len(reference or [])} tokens; {line}", flush=True)
            (out / "v03_vs_v04.partial.json").write_text(json.dumps(rows))
    finally:
        for worker in workers.values():
            worker.stop()
    summary = summarize(rows, plans, ks)
    report = {
        "what": "generate(assistant_model=trimmed draft) with the draft built and run by hf-vocabtrim "
        f"{workers['v03'].info['version']} (v03) and by the current code {workers['v04'].info['version']} (v04), "
        "each in its own environment, on the same machine in one run, rounds interleaved per prompt. Ratios: tokens/s "
        "of the second over the first, median over prompts of per-prompt ratios of median seconds, 95% bootstrap CI. "
        "draft_step_ms: median time of one draft forward of one token inside generate(); drafting / forward / around "
        "ms per proposal: a round's drafting phase, the draft's forwards in it and the rest, per proposed token.",
        "cpu": cpu_model(),
        "settings": {
            "target": Path(args.target).name,
            "draft": Path(args.draft).name,
            "prompts": f"{names[0]} .. {names[-1]}",
            "rounds": args.rounds,
            "max_new_tokens": args.max_new_tokens,
            "num_assistant_tokens": args.gamma,
            "threads": args.threads,
            "dtype": "float32",
            "context_tokens": True,
            "plans": {name: os.path.relpath(folder, ROOT) for name, folder, _ in map(_plan_spec, args.plans)},
        },
        "versions": {
            version: {**worker.info, "source": None, "commit": _commit(worker.info["source"])}
            for version, worker in workers.items()
        },
        **summary,
        "lossless": "every output equal across versions, drafts and rounds"
        + (" and to the target alone's" if args.with_target else ""),
        "target_alone": target_rows or None,
        "per_prompt": rows,
        "outputs": outputs,
        "wall_seconds": time.perf_counter() - started,
    }
    (out / "v03_vs_v04.json").write_text(json.dumps(report, indent=2))
    (out / "v03_vs_v04.partial.json").unlink(missing_ok=True)
    print_table(report)
    plot(report, out / "v03_vs_v04.png")


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{report['cpu']}; {report['settings']['prompts']}, {report['settings']['rounds']} rounds")
    entries = {**report["control"], **report["plans"]}
    for name, e in entries.items():
        lo, hi = e["v04_vs_v03_ci95"]
        line = f"{name:>18} k={e.get('k', '-')!s:>6}: v04/v03 {e['v04_vs_v03_median']:.3f} [{lo:.3f}, {hi:.3f}]"
        if "k" in e:
            line += f"; vs untrimmed v03 {e['v03_vs_untrimmed_median']:.3f}, v04 {e['v04_vs_untrimmed_median']:.3f}"
        line += f"; step ms {e['draft_step_ms_v03']:.2f} / {e['draft_step_ms_v04']:.2f}"
        line += f"; around ms/proposal {e['around_ms_per_proposal_v03']:.2f} / {e['around_ms_per_proposal_v04']:.2f}"
        print(line + f"; tau {e['tau_v03']:.3f} / {e['tau_v04']:.3f}")
    print(f"wall time {report['wall_seconds'] / 60:.1f} min")


def plot(report: dict[str, Any], path: Path) -> None:
    """Left: current vs old tokens/s per draft (95% CI); right: where a drafted token's time goes, per version."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = {**report["control"], **report["plans"]}
    names = [f"{name}, k = {e['k']:,}" if "k" in e else f"{name} (control)" for name, e in entries.items()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), constrained_layout=True)
    median = np.array([e["v04_vs_v03_median"] for e in entries.values()])
    ci = np.array([e["v04_vs_v03_ci95"] for e in entries.values()])
    left.barh(names, median - 1.0, left=1.0, xerr=[median - ci[:, 0], ci[:, 1] - median], capsize=4)
    left.axvline(1.0, color="black", lw=1)
    left.axvline(0.99, color="tab:red", ls="--", lw=1, label="target: current >= 0.99 x old")
    left.set_xlim(0.97, 1.03)
    left.set_xlabel("tokens/s, current code / old release (median over prompts, 95% bootstrap CI)")
    left.legend(loc="lower right", fontsize=8)
    versions = report["versions"]
    left.set_title(f"{versions['v04']['version']} vs {versions['v03']['version']}: generate(assistant_model=...)")
    y = np.arange(len(entries))
    for offset, version in ((-0.2, "v03"), (0.2, "v04")):
        step = [e[f"draft_step_ms_{version}"] for e in entries.values()]
        around = [e[f"around_ms_per_proposal_{version}"] for e in entries.values()]
        label = versions[version]["version"]
        right.barh(y + offset, step, height=0.38, label=f"{label}: draft decode step")
        right.barh(y + offset, around, left=step, height=0.38, label=f"{label}: work around it (per proposal)")
    right.set_yticks(y, names)
    right.set_xlabel("ms per proposed token")
    right.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    right.set_title(f"{report['cpu']}, {report['settings']['threads']} threads, fp32")
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
