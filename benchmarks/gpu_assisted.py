"""The trimmed draft on a GPU: eager vs captured drafting inside generate(assistant_model=...), in one command.

Random weights of the real shapes in bf16 (latency does not depend on weight values), batch 1, greedy:

1. draft step (forward + scatter to V + argmax): eager (transformers' DynamicCache) vs captured (this library's
   StaticDrafter, one CUDA graph per step), for the full head, k = 8,192, and k = 8,192 with 256 and 2,048 context
   ids (a sequence of that length; each against the static step at the same length); configurations interleaved
   round by round, median over rounds;
2. per-round costs inside real ``target.generate(assistant_model=...)`` calls (``record_assisted``): the eager
   untrimmed draft (the plain transformers model), and captured drafts: untrimmed (a draft "trimmed" to all V ids),
   static k = 8,192 and context k = 8,192; the target alone per token;
3. predicted tokens/s per pair and prompt set: tau x 1000 / (draft round + verification round). tau comes from the
   CPU real-pair runs committed in results/spec_decode/spec_decode.json (Qwen2.5-Coder 1.5B/0.5B, greedy, gamma 5;
   applied to every pair), the costs from these random-weight runs;
4. lossless: greedy assisted output == the target's own on 20 prompts through the captured path, static and context
   kept sets (a tiny fp32 pair whose draft shares the target's weights, so rounds both accept and reject), and the
   real-shape pairs' assisted outputs beside the target's (bf16: near-ties may flip; reported, eager included);
5. sync check: captured decode steps (context kept set) and the eager context-token step under
   ``torch.cuda.set_sync_debug_mode("error")``;
6. the same captured step through ``torch.compile(mode="reduce-overhead")`` vs the manual CUDA graph (last: optional).

Writes OUT/gpu_assisted.json (and a partial file after each section) and OUT/gpu_assisted.png.

    python benchmarks/gpu_assisted.py --out results/gpu                 # a CUDA device (about 6 min on an H200)
    python benchmarks/gpu_assisted.py --smoke --out /tmp/gpu_smoke      # the same code on tiny shapes on the CPU,
                                                                        # "captured" = the CPU twin of capture
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.measure.assisted_costs import _rounds
from hf_vocabtrim.measure.instrument import record_assisted
from hf_vocabtrim.model import fast_path
from hf_vocabtrim.model.fast_path import StaticDrafter
from hf_vocabtrim.tiny import build_tiny_tokenizer, demo_chats, tiny_causal_lm

ROOT = Path(__file__).resolve().parents[1]
# Real shapes (rope scaling left out: it does not change the cost of a step).
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(
        model_type="qwen2", hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
        intermediate_size=4864, vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6,
    ),
    "qwen2.5-1.5b": dict(
        model_type="qwen2", hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
        intermediate_size=8960, vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6,
    ),
    "llama-3.2-1b": dict(
        model_type="llama", hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
        head_dim=64, intermediate_size=8192, vocab_size=128256, tie_word_embeddings=True, rope_theta=5e5,
    ),
    "llama-3.1-8b": dict(
        model_type="llama", hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False, rope_theta=5e5,
    ),
    "gemma-3-270m": dict(
        model_type="gemma3_text", hidden_size=640, num_hidden_layers=18, num_attention_heads=4, num_key_value_heads=1,
        head_dim=256, intermediate_size=2048, vocab_size=262144, sliding_window=512, query_pre_attn_scalar=256,
        tie_word_embeddings=True,
    ),
    "gemma-3-1b": dict(
        model_type="gemma3_text", hidden_size=1152, num_hidden_layers=26, num_attention_heads=4, num_key_value_heads=1,
        head_dim=256, intermediate_size=6912, vocab_size=262144, sliding_window=512, query_pre_attn_scalar=256,
        tie_word_embeddings=True,
    ),
    # --smoke: the same code on the CPU in seconds
    "tiny-target": dict(model_type="qwen2", hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=2, intermediate_size=128, vocab_size=4096, tie_word_embeddings=True),
    "tiny-draft": dict(model_type="gemma3_text", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=8, intermediate_size=64, vocab_size=4096, sliding_window=16,
                       query_pre_attn_scalar=8, tie_word_embeddings=True),  # a window the smoke run passes
}  # fmt: skip
PAIRS = {
    "qwen2.5-1.5b+0.5b": ("qwen2.5-1.5b", "qwen2.5-0.5b"),
    "llama-3.1-8b+3.2-1b": ("llama-3.1-8b", "llama-3.2-1b"),
    "gemma-3-1b+270m": ("gemma-3-1b", "gemma-3-270m"),
}
SMOKE_PAIRS = {"tiny": ("tiny-target", "tiny-draft")}
TAU_SETS = {"humaneval": "humaneval/code", "spec_bench": "spec_bench/general"}  # prompt set -> tau_grid key


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(name: str, device: torch.device, dtype: torch.dtype) -> Any:
    spec = dict(SHAPES[name])
    config = AutoConfig.for_model(spec.pop("model_type"), **spec, max_position_embeddings=8192)
    torch.manual_seed(0)
    with device:  # weights initialised where they live
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    return model.eval()


def trimmed(draft: Any, k: int | None, context: bool, vocab: int) -> TrimmedDraftModel:
    """``draft`` trimmed to k random ids (None: all V ids, the captured untrimmed draft); auto fast path."""
    keep = torch.arange(vocab) if k is None else torch.randperm(vocab, generator=torch.Generator().manual_seed(k))[:k]
    return TrimmedDraftModel.from_draft(draft, keep, keep_special_tokens=False, context_tokens=context).eval()


# --------------------------------------------------------------------------------------------- 1. draft steps
class EagerSteps:
    """Greedy decode steps of a model with transformers' DynamicCache (what generate() runs per draft token)."""

    def __init__(self, model: Any, prompt: torch.Tensor) -> None:
        self.model, self.length = model, prompt.shape[1]
        self.scatter = model.to_full_vocab if isinstance(model, TrimmedDraftModel) else None
        self.cache = DynamicCache(config=model.config.get_text_config(decoder=True))
        self.token = self._step(prompt)
        self.cache.activate_past_recording()  # sliding-window layers past their window can then be cropped back

    def _step(self, ids: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=ids, cache=self.cache, use_cache=True, logits_to_keep=1).logits[:, -1].float()
        return (self.scatter(logits) if self.scatter is not None else logits).argmax(-1, keepdim=True)

    def run(self, steps: int) -> None:
        token = self.token
        for _ in range(steps):
            token = self._step(token)

    def rewind(self) -> None:
        if self.cache.get_seq_length() > self.length:
            self.cache.crop(self.length - self.cache.get_seq_length())  # a negative count drops tokens


class CapturedSteps:
    """The same steps through a StaticDrafter: one graph replay (CUDA, or the CPU twin) + argmax per token."""

    def __init__(self, model: TrimmedDraftModel, prompt: torch.Tensor, capture: str, steps: int) -> None:
        self.drafter = StaticDrafter(model, capture=capture)
        self.drafter.reserve(prompt.shape[1] + steps + 8)
        self.length = prompt.shape[1]
        self.token = self.drafter._feed(prompt).argmax(-1, keepdim=True)  # the prefill (not captured)
        self.drafter.ids.extend([-1] * self.length)  # positions held (the ids themselves are not needed here)

    def run(self, steps: int) -> None:
        token = self.token
        for _ in range(steps):
            token = self.drafter._feed(token).argmax(-1, keepdim=True)
            self.drafter.ids.append(-1)

    def rewind(self) -> None:
        self.drafter._rewind(self.length)


def time_steps(runners: dict[str, Any], device: torch.device, steps: int, rounds: int) -> dict[str, float]:
    """Median ms per step of each runner, interleaved round by round (round 0 is a warm-up; the order rotates)."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    with torch.no_grad():
        for index in range(rounds + 1):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                sync(device)
                start = time.perf_counter()
                runners[name].run(steps)
                sync(device)
                if index:
                    samples[name].append((time.perf_counter() - start) * 1000 / steps)
                runners[name].rewind()
    return {name: statistics.median(values) for name, values in samples.items()}


def draft_steps(draft: Any, args: argparse.Namespace, device: torch.device, capture: str) -> dict[str, Any]:
    vocab = draft.config.vocab_size
    k = args.k if args.k < vocab else vocab // 8
    generator = torch.Generator().manual_seed(0)

    def prompt(n: int) -> torch.Tensor:
        return torch.randint(0, vocab, (1, n), generator=generator).to(device)

    static_k, context_k = trimmed(draft, k, False, vocab), trimmed(draft, k, True, vocab)
    full = trimmed(draft, None, False, vocab)
    base = prompt(args.prompt)
    runners: dict[str, Any] = {
        "eager_full": EagerSteps(draft, base),
        f"eager_k{k}": EagerSteps(static_k, base),
        "captured_full": CapturedSteps(full, base, capture, args.steps),
        f"captured_k{k}": CapturedSteps(static_k, base, capture, args.steps),
    }
    for n in args.context_ids:
        ids = prompt(n)
        for mode in ("eager", "captured"):
            for label, model in ((f"len{n}", static_k), (f"ctx{n}", context_k)):
                key = f"{mode}_k{k}_{label}"
                runners[key] = (
                    EagerSteps(model, ids) if mode == "eager" else CapturedSteps(model, ids, capture, args.steps)
                )
    ms = time_steps(runners, device, args.steps, args.rounds)
    result: dict[str, Any] = {"k": k, "ms": ms, "prompt_tokens": args.prompt, "steps": args.steps}
    result["captured_vs_eager_full"] = ms["eager_full"] / ms["captured_full"]
    result["trimming_gain_captured"] = ms["captured_full"] / ms[f"captured_k{k}"] - 1.0
    result["trimming_gain_eager"] = ms["eager_full"] / ms[f"eager_k{k}"] - 1.0
    result["head_share_captured"] = 1.0 - ms[f"captured_k{k}"] / ms["captured_full"]
    result["context_overhead"] = {
        f"{mode}_{n}": ms[f"{mode}_k{k}_ctx{n}"] / ms[f"{mode}_k{k}_len{n}"] - 1.0
        for mode in ("eager", "captured")
        for n in args.context_ids
    }
    del runners
    return result


# --------------------------------------------------------------------------------------------- 2-3. rounds
def round_costs(target: Any, drafts: dict[str, Any], args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Target alone ms/token and, per draft, the median drafting and verification ms of a full round of gamma
    proposals inside real generate() calls; also whether each assisted output equals the target's."""
    vocab = target.config.vocab_size
    prompt = torch.randint(0, vocab, (1, args.prompt), generator=torch.Generator().manual_seed(1)).to(device)
    settings = {"num_assistant_tokens": args.gamma, "num_assistant_tokens_schedule": "constant"}
    settings["assistant_confidence_threshold"] = 0.0

    def run(new: int, assistant: Any = None) -> tuple[float, torch.Tensor]:
        kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "do_sample": False}
        kwargs.update(max_new_tokens=new, min_new_tokens=new)
        if assistant is not None:
            kwargs["assistant_model"] = assistant
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            out = target.generate(**kwargs)
        sync(device)
        return time.perf_counter() - start, out

    for draft in drafts.values():
        draft.generation_config.update(**settings)
    run(4)
    reference = run(args.new_tokens)[1]
    per_token, drafting, verify = [], {name: [] for name in drafts}, {name: [] for name in drafts}
    equal: dict[str, bool] = {}
    names = list(drafts)
    for name in names:
        run(8, drafts[name])  # warm-up: first calls capture the graphs
    for repeat in range(args.repeats):
        short, long = run(4)[0], run(4 + args.new_tokens)[0]
        per_token.append((long - short) * 1000 / args.new_tokens)
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
            with record_assisted() as stats:
                output = run(args.new_tokens, drafts[name])[1]
            equal[name] = equal.get(name, True) and torch.equal(output, reference)
            draft_s, rest = _rounds(stats, args.gamma)
            drafting[name] += [1000 * s for s in draft_s]
            verify[name] += [1000 * s for s in rest]
    return {
        "target_ms_per_token": statistics.median(per_token),
        "draft_round_ms": {name: median(v) for name, v in drafting.items()},
        "verify_round_ms": {name: median(v) for name, v in verify.items()},
        "rounds_timed": {name: len(v) for name, v in drafting.items()},
        "assisted_equals_target": equal,
    }


def predictions(costs: dict[str, Any], tau_file: Path, k: int) -> dict[str, dict[str, float]]:
    """tokens/s = tau * 1000 / (draft round + verification round); the target alone 1000 / ms per token."""
    grid = json.loads(tau_file.read_text())["tau_grid"]
    out: dict[str, dict[str, float]] = {}
    for set_name, key in TAU_SETS.items():
        row = grid[key]
        at_k = row["ks"].index(k) if k in row["ks"] else None
        taus = {"eager_untrimmed": row["untrimmed_tau"], "captured_untrimmed": row["untrimmed_tau"]}
        if at_k is not None:
            taus.update(captured_static_k8192=row["static_tau"][at_k], captured_context=row["context_tau"][at_k])
        preds = {"target": 1000.0 / costs["target_ms_per_token"]}
        for name, tau in taus.items():
            if name in costs["draft_round_ms"]:
                round_ms = costs["draft_round_ms"][name] + costs["verify_round_ms"][name]
                preds[name] = tau * 1000.0 / round_ms
        out[set_name] = preds
    return out


# --------------------------------------------------------------------------------------------- 4-6. checks
def lossless(device: torch.device, prompts: int) -> dict[str, Any]:
    """Greedy assisted == target through the captured path: tiny fp32 pairs, the draft = the target's weights."""
    tokenizer = build_tiny_tokenizer()
    vocab, eos = len(tokenizer), tokenizer.eos_token_id
    rows, all_equal, accepted = [], True, 0
    for arch in ("qwen2", "gemma3_text", "llama"):
        target = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=eos).to(device)
        draft = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=eos).to(device)
        for context in (False, True):
            model = TrimmedDraftModel.from_draft(draft, range(0, vocab, 2), tokenizer=tokenizer, context_tokens=context)
            if device.type != "cuda":
                fast_path.attach(model, StaticDrafter(model, capture="twin"))
                model.config.fast_path = "static"
            equal = 0
            for chat in demo_chats(prompts, seed=3):
                messages = [m for m in chat["messages"] if m["role"] != "assistant"][:2]
                x = tokenizer.apply_chat_template(
                    messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
                )
                ids = x["input_ids"].to(device)
                kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "max_new_tokens": 24}
                with torch.no_grad(), record_assisted() as stats:
                    same = torch.equal(target.generate(**kwargs), target.generate(**kwargs, assistant_model=model))
                equal += same
                accepted += sum(stats.matches)
            rows.append({"arch": arch, "context_tokens": context, "prompts": prompts, "equal": equal})
            all_equal &= equal == prompts
            path = fast_path.mode(model)
    return {"prompts": prompts, "all_equal": bool(all_equal), "accepted_tokens": accepted, "path": path, "runs": rows}


def sync_check(draft: Any, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Decode steps under torch.cuda.set_sync_debug_mode("error"): captured (context kept set) and eager context."""
    if device.type != "cuda":
        return {"sync_free": None, "note": "CUDA only"}
    vocab = draft.config.vocab_size
    context = trimmed(draft, min(args.k, vocab // 8), True, vocab)
    prompt = torch.randint(0, vocab, (1, 256), generator=torch.Generator().manual_seed(2)).to(device)
    runners = {
        "captured_context": CapturedSteps(context, prompt, "cuda", 8),
        "eager_context": EagerSteps(context, prompt),
    }
    result: dict[str, Any] = {}
    with torch.no_grad():
        for name, runner in runners.items():
            runner.run(2)  # warm-up (graphs captured, slots grown) outside the check
            runner.rewind()
            sync(device)
            torch.cuda.set_sync_debug_mode("error")
            try:
                runner.run(8)
                result[name] = "no host synchronisation in 8 steps"
            except RuntimeError as err:
                result[name] = f"synchronised: {str(err).splitlines()[0]}"
            finally:
                torch.cuda.set_sync_debug_mode(0)
    result["sync_free"] = all(value.startswith("no host") for value in result.values())
    return result


def compile_vs_graph(draft: Any, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The static step through torch.compile(mode="reduce-overhead") vs this library's manual CUDA graph."""
    vocab = draft.config.vocab_size
    model = trimmed(draft, min(args.k, vocab // 8), False, vocab)
    prompt = torch.randint(0, vocab, (1, args.prompt), generator=torch.Generator().manual_seed(3)).to(device)
    graph = CapturedSteps(model, prompt, "cuda", args.steps)
    compiled = CapturedSteps(model, prompt, "cuda", args.steps)
    step = torch.compile(compiled.drafter._forward, mode="reduce-overhead", fullgraph=True, dynamic=False)
    compiled.drafter.capture = None  # _feed calls _forward, replaced by the compiled step
    compiled.drafter._forward = step  # type: ignore[method-assign]
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(3):  # compilation and cudagraph recording
            compiled.run(1)
            compiled.rewind()
    compile_s = time.perf_counter() - start
    ms = time_steps({"manual_graph": graph, "compile_reduce_overhead": compiled}, device, args.steps, args.rounds)
    return {"ms": ms, "compile_seconds": compile_s, "chosen": min(ms, key=ms.get)}


# --------------------------------------------------------------------------------------------- report
def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), constrained_layout=True)
    steps = report.get("draft_step", {})
    names = list(steps)
    labels = ["full head", "k", "k + context"]
    for offset, mode, colour in ((0.0, "eager", "tab:gray"), (0.4, "captured", "tab:green")):
        for j, label in enumerate(labels):
            values = []
            for name in names:
                row, k = steps[name]["ms"], steps[name]["k"]
                n = report["settings"]["context_ids"][0]
                key = {"full head": f"{mode}_full", "k": f"{mode}_k{k}_len{n}", "k + context": f"{mode}_k{k}_ctx{n}"}
                values.append(row[key[label]])
            xs = [i + offset + j * 0.13 for i in range(len(names))]
            axes[0].bar(xs, values, 0.12, color=colour, alpha=1.0 - 0.3 * j, label=f"{mode}: {label}")
    axes[0].set_xticks([i + 0.33 for i in range(len(names))], names)
    axes[0].set_ylabel("ms per draft step (forward + scatter to V + argmax)")
    axes[0].set_title(f"draft step at {report['settings']['context_ids'][0]} tokens of context")
    axes[0].legend(fontsize=7)
    rounds = report.get("round_ms", {})
    labels, draft_ms, verify_ms = [], [], []
    for pair, row in rounds.items():
        for name in ("eager_untrimmed", "captured_untrimmed", "captured_static_k8192", "captured_context"):
            if name in row:
                labels.append(f"{pair}\n{name}")
                draft_ms.append(row[name]["draft"])
                verify_ms.append(row[name]["verify"])
    axes[1].barh(labels, draft_ms, label="drafting (gamma proposals)", color="tab:orange")
    axes[1].barh(labels, verify_ms, left=draft_ms, label="verification + bookkeeping", color="tab:blue")
    axes[1].tick_params(axis="y", labelsize=6)
    axes[1].set_xlabel("ms per assisted round")
    axes[1].set_title("inside generate(assistant_model=...)")
    axes[1].legend(fontsize=7)
    preds = report.get("predicted_tok_s", {})
    labels, values = [], []
    for pair, sets in preds.items():
        for set_name, row in sets.items():
            for name, value in row.items():
                labels.append(f"{pair} {set_name} {name}")
                values.append(value)
    axes[2].barh(labels, values, color="tab:green")
    axes[2].tick_params(axis="y", labelsize=6)
    axes[2].set_xlabel("predicted tokens/s (tau from the CPU real pair)")
    axes[2].set_title(report.get("device", ""))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / "results" / "gpu"), help="output folder")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (captured = the CPU twin)")
    parser.add_argument("--pairs", nargs="+", default=None, help=f"target+draft pairs (default: {list(PAIRS)})")
    parser.add_argument("--k", type=int, default=8192, help="kept ids of the trimmed drafts")
    parser.add_argument("--context-ids", nargs="+", type=int, default=[256, 2048], help="context lengths timed")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens before the timed steps and rounds")
    parser.add_argument("--steps", type=int, default=8, help="decode steps per timed round")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (median)")
    parser.add_argument("--gamma", type=int, default=5, help="num_assistant_tokens")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens per timed generate() call")
    parser.add_argument("--repeats", type=int, default=3, help="timed generate() calls per configuration")
    parser.add_argument("--lossless-prompts", type=int, default=20)
    parser.add_argument("--tau", default=str(ROOT / "results" / "spec_decode" / "spec_decode.json"))
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile comparison")
    parser.add_argument("--budget-s", type=float, default=450.0, help="skip optional sections past this wall time")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.smoke:
        device, dtype, pairs, capture = torch.device("cpu"), torch.float32, SMOKE_PAIRS, "twin"
        args.context_ids, args.rounds, args.repeats, args.new_tokens = [32, 64], 3, 1, 48
        args.lossless_prompts, args.no_compile = min(args.lossless_prompts, 4), True
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU, or use --smoke for the CPU twin of this benchmark")
        device, dtype, capture = torch.device("cuda"), torch.bfloat16, "cuda"
        pairs = {name: PAIRS[name] for name in (args.pairs or PAIRS)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke run, CPU twin)"
    report: dict[str, Any] = {
        "device": device_name,
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "weights": "random (latency does not depend on weight values)",
        "tau_source": "CPU real-pair runs (results/spec_decode/spec_decode.json: Qwen2.5-Coder-1.5B/0.5B-Instruct, "
        "greedy, gamma 5), applied to every pair; costs from these random-weight runs",
        "settings": {key: value for key, value in vars(args).items() if key not in ("out", "tau")},
        "draft_step_ms": {},
        "draft_step": {},
        "round_ms": {},
        "rounds": {},
        "predicted_tok_s": {},
    }

    def save(final: bool = False) -> None:
        report["wall_seconds"] = time.perf_counter() - started
        name = "gpu_assisted.json" if final else "gpu_assisted.partial.json"
        (out / name).write_text(json.dumps(report, indent=2))

    print(f"device: {device_name}", flush=True)
    report["lossless"] = lossless(device, args.lossless_prompts)
    print(f"lossless: {report['lossless']}", flush=True)
    save()
    for pair, (target_name, draft_name) in pairs.items():
        target, draft = build(target_name, device, dtype), build(draft_name, device, dtype)
        print(f"== {pair}: draft steps", flush=True)
        steps = draft_steps(draft, args, device, capture)
        k = steps["k"]
        report["draft_step"][draft_name] = steps
        ms = steps["ms"]
        named = {"eager_full": ms["eager_full"], f"eager_k{k}": ms[f"eager_k{k}"]}
        named.update({"captured_full": ms["captured_full"], f"captured_k{k}": ms[f"captured_k{k}"]})
        for n in args.context_ids:
            for mode in ("eager", "captured"):
                named[f"{mode}_k{k}_ctx{n}"] = ms[f"{mode}_k{k}_ctx{n}"]
                named[f"{mode}_k{k}_len{n}"] = ms[f"{mode}_k{k}_len{n}"]
        report["draft_step_ms"][draft_name] = named
        print(json.dumps(named, indent=1), flush=True)
        save()
        print(f"== {pair}: rounds inside generate()", flush=True)
        vocab = draft.config.vocab_size
        drafts = {
            "eager_untrimmed": draft,
            "captured_untrimmed": trimmed(draft, None, False, vocab),
            "captured_static_k8192": trimmed(draft, k, False, vocab),
            "captured_context": trimmed(draft, k, True, vocab),
        }
        if device.type != "cuda":
            for model in drafts.values():
                if isinstance(model, TrimmedDraftModel):
                    fast_path.attach(model, StaticDrafter(model, capture="twin"))
                    model.config.fast_path = "static"
        costs = round_costs(target, drafts, args, device)
        report["rounds"][pair] = costs
        report["round_ms"][pair] = {
            name: {"draft": costs["draft_round_ms"][name], "verify": costs["verify_round_ms"][name]} for name in drafts
        }
        report["round_ms"][pair]["target_ms_per_token"] = costs["target_ms_per_token"]
        report["predicted_tok_s"][pair] = predictions(costs, Path(args.tau), args.k)
        print(json.dumps(report["round_ms"][pair], indent=1), json.dumps(report["predicted_tok_s"][pair]), flush=True)
        save()
        if "sync_check" not in report:
            report["sync_check"] = sync_check(draft, args, device)
            report["sync_free"] = report["sync_check"]["sync_free"]
            save()
        if not args.no_compile and "compile" not in report and time.perf_counter() - started < args.budget_s / 2:
            try:
                report["compile"] = compile_vs_graph(draft, args, device)
            except Exception as err:  # report it; the manual graph is the path either way
                report["compile"] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"}
            save()
        del target, draft, drafts
        if device.type == "cuda":
            torch.cuda.empty_cache()
        if time.perf_counter() - started > args.budget_s:
            report["skipped_pairs"] = [p for p in pairs if p not in report["round_ms"]]
            print(f"budget reached: skipped {report['skipped_pairs']}", flush=True)
            break
    save(final=True)
    plot(report, out / "gpu_assisted.png")
    print(f"wrote {out / 'gpu_assisted.json'} and gpu_assisted.png in {report['wall_seconds']:.0f} s")


if __name__ == "__main__":
    main()
