"""One EAGLE-3 draft step of the Llama-3.1-8B head shape, captured in a CUDA graph, vs the kept vocabulary k.

The step (bf16, random weights: latency does not depend on values): fc fusing three target hidden states (3 x 4,096
-> 4,096), one decoder layer whose attention reads [token embedding; fused state] (2 x 4,096 wide for q, k, v) over
a static KV cache, a gated MLP (14,336), the final norm, the LM head over k rows, the scatter of its logits into a
-inf row of width V = 128,256 at arange(k) + d2t (what vLLM's compute_logits does) and the argmax. k = 32,000 (the
published heads), 16,384, 8,192 and 4,096; batch 1 and 16; configurations interleaved round by round, each round
timed with CUDA events over --steps replays, median over rounds.

    python benchmarks/gpu_eagle3_step.py --out results/gpu          # a CUDA device (well under a minute)
    python benchmarks/gpu_eagle3_step.py --smoke --out /tmp/eagle3  # the same code, tiny and uncaptured, on the CPU

Writes OUT/eagle3_step.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_vocabtrim.selection.flops import eagle3_decode_flops

LLAMA_8B = {"hidden": 4096, "heads": 32, "kv_heads": 8, "head_dim": 128, "intermediate": 14336, "vocab": 128256}
TINY = {"hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16, "intermediate": 128, "vocab": 4096}


class RMSNorm(nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
        return (x.float() * scale).to(x.dtype) * self.weight


class Eagle3Step(nn.Module):
    """The EAGLE-3 draft step described in the module docstring, over a static cache of ``cache_len`` positions."""

    def __init__(self, shape: dict[str, int], k: int, batch: int, cache_len: int) -> None:
        super().__init__()
        h, heads, kv, dim, inter = (shape[key] for key in ("hidden", "heads", "kv_heads", "head_dim", "intermediate"))
        self.heads, self.kv_heads, self.dim, self.vocab = heads, kv, dim, shape["vocab"]
        self.embed = nn.Embedding(shape["vocab"], h)
        self.fc = nn.Linear(3 * h, h, bias=False)
        self.input_norm, self.hidden_norm, self.post_norm, self.norm = (RMSNorm(h) for _ in range(4))
        self.q = nn.Linear(2 * h, heads * dim, bias=False)
        self.k = nn.Linear(2 * h, kv * dim, bias=False)
        self.v = nn.Linear(2 * h, kv * dim, bias=False)
        self.o = nn.Linear(heads * dim, h, bias=False)
        self.gate, self.up = nn.Linear(h, inter, bias=False), nn.Linear(h, inter, bias=False)
        self.down = nn.Linear(inter, h, bias=False)
        self.lm_head = nn.Linear(h, k, bias=False)
        kept = torch.sort(torch.randperm(shape["vocab"])[:k]).values
        self.register_buffer("d2t", kept - torch.arange(k))
        self.register_buffer("keys", torch.zeros(batch, kv, cache_len, dim))
        self.register_buffer("values", torch.zeros(batch, kv, cache_len, dim))
        self.register_buffer("positions", torch.arange(cache_len))

    def forward(self, token: torch.Tensor, target_states: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """token (B, 1), target_states (B, 1, 3h), position: a 0-d tensor -> next draft ids (B,)."""
        batch = token.shape[0]
        fused = self.fc(target_states)
        x = torch.cat([self.input_norm(self.embed(token)), self.hidden_norm(fused)], dim=-1)
        q = self.q(x).view(batch, 1, self.heads, self.dim).transpose(1, 2)
        k = self.k(x).view(batch, 1, self.kv_heads, self.dim).transpose(1, 2)
        v = self.v(x).view(batch, 1, self.kv_heads, self.dim).transpose(1, 2)
        slot = position.reshape(1)
        self.keys.index_copy_(2, slot, k)
        self.values.index_copy_(2, slot, v)
        mask = (self.positions <= position).view(1, 1, 1, -1)
        attn = F.scaled_dot_product_attention(q, self.keys, self.values, attn_mask=mask, enable_gqa=True)
        hidden = fused + self.o(attn.transpose(1, 2).reshape(batch, 1, -1))
        y = self.post_norm(hidden)
        hidden = hidden + self.down(F.silu(self.gate(y)) * self.up(y))
        logits = self.lm_head(self.norm(hidden))[:, -1].float()
        full = logits.new_full((batch, self.vocab), float("-inf"))
        full.index_copy_(1, torch.arange(self.d2t.numel(), device=full.device) + self.d2t, logits)
        return full.argmax(-1)


class Runner:
    """A captured (CUDA graph) or plain step with static inputs."""

    def __init__(self, step: Eagle3Step, batch: int, shape: dict[str, int], device: torch.device) -> None:
        self.step = step
        self.token = torch.randint(0, shape["vocab"], (batch, 1), device=device)
        self.states = torch.randn(batch, 1, 3 * shape["hidden"], device=device, dtype=step.fc.weight.dtype)
        self.position = torch.tensor(100, device=device)
        self.graph = None
        if device.type == "cuda":
            stream = torch.cuda.Stream(device)
            stream.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(stream), torch.no_grad():
                for _ in range(3):
                    self.step(self.token, self.states, self.position)
            torch.cuda.current_stream(device).wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph), torch.no_grad():
                self.out = self.step(self.token, self.states, self.position)

    def run(self, steps: int) -> None:
        with torch.no_grad():
            for _ in range(steps):
                if self.graph is not None:
                    self.graph.replay()
                else:
                    self.out = self.step(self.token, self.states, self.position)


def time_us(runners: dict[int, Runner], device: torch.device, steps: int, rounds: int) -> dict[int, float]:
    samples: dict[int, list[float]] = {k: [] for k in runners}
    keys = list(runners)
    for index in range(rounds + 1):  # round 0 is a warm-up; the order rotates
        shift = index % len(keys)
        for k in keys[shift:] + keys[:shift]:
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                runners[k].run(steps)
                end.record()
                end.synchronize()
                elapsed_us = start.elapsed_time(end) * 1000 / steps
            else:
                t0 = time.perf_counter()
                runners[k].run(steps)
                elapsed_us = (time.perf_counter() - t0) * 1e6 / steps
            if index:
                samples[k].append(elapsed_us)
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/gpu", help="output folder")
    parser.add_argument("--smoke", action="store_true", help="tiny shape on the CPU, uncaptured")
    parser.add_argument("--ks", nargs="+", type=int, default=[32000, 16384, 8192, 4096])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--steps", type=int, default=200, help="replays per timed round")
    parser.add_argument("--rounds", type=int, default=21, help="timed rounds (median)")
    parser.add_argument("--cache-len", type=int, default=2048, help="static KV cache positions")
    args = parser.parse_args()
    if args.smoke:
        device, dtype, shape = torch.device("cpu"), torch.float32, TINY
        args.ks, args.steps, args.rounds, args.cache_len = [1024, 512, 256], 5, 3, 256
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run on a GPU, or use --smoke")
        device, dtype, shape = torch.device("cuda"), torch.bfloat16, LLAMA_8B
    torch.manual_seed(0)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (smoke run, uncaptured)",
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "shape": {**shape, "name": "Llama-3.1-8B EAGLE-3 head" if not args.smoke else "tiny"},
        "captured": device.type == "cuda",
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "cache_len": args.cache_len,
        "step_us": {},
        "speedup_vs_first_k": {},
    }
    config = type("C", (), {"hidden_size": shape["hidden"], "num_attention_heads": shape["heads"],
                            "num_key_value_heads": shape["kv_heads"], "head_dim": shape["head_dim"],
                            "intermediate_size": shape["intermediate"], "vocab_size": shape["vocab"]})()  # fmt: skip
    flops = {k: eagle3_decode_flops(config, k=k, context_length=100) for k in args.ks}
    result["lm_head_share_flops"] = {str(k): f.lm_head / f.total for k, f in flops.items()}
    for batch in args.batches:
        runners = {}
        for k in args.ks:
            step = Eagle3Step(shape, k, batch, args.cache_len).to(device=device, dtype=dtype)  # ids stay int64
            runners[k] = Runner(step, batch, shape, device)
        us = time_us(runners, device, args.steps, args.rounds)
        result["step_us"][str(batch)] = {str(k): v for k, v in us.items()}
        first = args.ks[0]
        result["speedup_vs_first_k"][str(batch)] = {str(k): us[first] / v for k, v in us.items()}
        print(f"batch {batch}: " + ", ".join(f"k={k}: {v:.1f} us ({us[first] / v:.3f}x)" for k, v in us.items()))
        del runners
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eagle3_step.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {out / 'eagle3_step.json'}")


if __name__ == "__main__":
    main()
