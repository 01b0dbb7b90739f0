"""A fixture EAGLE-3 head: vLLM's ``LlamaForCausalLMEagle3`` forward in plain torch, trained one step ahead on a
target's hidden states, saved in the layout vLLM, SGLang and SpecForge load.

This is a test and benchmark fixture, not a trainer: SpecForge and vLLM's speculators train real heads (multi-step
"training-time test", far more data). What it reproduces is what matters for trimming: a one-layer head whose LM head
holds SpecForge's default draft vocabulary (the ``draft_vocab`` ids most used in the target's own replies, end of turn
included, ranked by count, ties by lower id), ``d2t`` / ``t2d`` as the engines read them, and realistic acceptance
in vLLM. The recipe is deterministic (seeded; same data, same head); the weights stay out of the repository.

The head at position i reads the target's auxiliary hidden states at i (the inputs of the target layers
``aux_layers``: HF's ``hidden_states[l]``, which vLLM captures for EAGLE-3) and the embedding of token i + 1, and is
trained to predict the target's greedy token at i + 2; its later drafting steps (vLLM feeds the head its own output)
are trained the same way for ``steps`` steps, with the attention pattern vLLM's draft KV cache has (EAGLE-3's
"training-time test", here 2 steps by default).

    layer: e = input_layernorm(embedding); r = fc(aux); x = [e, hidden_norm(r)] -> attention (q/k/v read 2H) -> + r
           -> post_attention_layernorm -> MLP -> + residual;  logits = lm_head(norm(.))
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from tqdm import tqdm
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP, LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb


def default_aux_layers(num_layers: int) -> list[int]:
    """vLLM's default auxiliary layers for EAGLE-3, (2, L // 2, L - 3); (1, L // 2, L - 1) where those are not three
    distinct layers (tiny targets: vLLM's own default then feeds fc only two states and fails)."""
    ids = sorted({2, num_layers // 2, num_layers - 3})
    return ids if len(ids) == 3 and ids[0] >= 1 else [1, num_layers // 2, num_layers - 1]


def head_config(target_config: Any, draft_vocab: int, aux_layers: list[int], **overrides: Any) -> LlamaConfig:
    """The head's config: one Llama layer of the target's width (vLLM shares the target's embedding when the widths
    match), ``draft_vocab_size`` rows, ``vocab_size`` = the target's V, the aux layers in ``eagle_config``."""
    text = target_config.get_text_config()
    rope = dict(getattr(text, "rope_parameters", None) or {"rope_type": "default", "rope_theta": 10000.0})
    values = {
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "head_dim": getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads,
        "rms_norm_eps": text.rms_norm_eps,
        "max_position_embeddings": text.max_position_embeddings,
        "rope_parameters": {"rope_type": "default", "rope_theta": float(rope.get("rope_theta", 10000.0))},
        "vocab_size": text.vocab_size,
        "num_hidden_layers": 1,
        "tie_word_embeddings": False,
        "bos_token_id": getattr(text, "bos_token_id", None),
        "eos_token_id": getattr(text, "eos_token_id", None),
        **overrides,
    }
    config = LlamaConfig(**values)
    config.draft_vocab_size = int(draft_vocab)
    config.eagle_config = {"eagle_aux_hidden_state_layer_ids": list(aux_layers), "use_aux_hidden_state": True}
    config.architectures = ["LlamaForCausalLMEagle3"]
    return config


class _Attention(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        hidden, head_dim = config.hidden_size, config.head_dim
        self.heads, self.kv_heads, self.head_dim = config.num_attention_heads, config.num_key_value_heads, head_dim
        self.q_proj = nn.Linear(2 * hidden, self.heads * head_dim, bias=False)
        self.k_proj = nn.Linear(2 * hidden, self.kv_heads * head_dim, bias=False)
        self.v_proj = nn.Linear(2 * hidden, self.kv_heads * head_dim, bias=False)
        self.o_proj = nn.Linear(self.heads * head_dim, hidden, bias=False)

    def qkv(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(heads, T, head_dim) queries and (kv_heads, T, head_dim) keys and values of one sequence x (T, 2H)."""
        length = x.shape[0]
        q = self.q_proj(x).view(length, self.heads, self.head_dim).transpose(0, 1)
        k = self.k_proj(x).view(length, self.kv_heads, self.head_dim).transpose(0, 1)
        v = self.v_proj(x).view(length, self.kv_heads, self.head_dim).transpose(0, 1)
        q, k = apply_rotary_pos_emb(q[None], k[None], *rope)
        return q[0], k[0], v


class _MidLayer(nn.Module):
    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.self_attn = _Attention(config)
        self.mlp = LlamaMLP(config)
        self.hidden_norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.input_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class Eagle3Head(nn.Module):
    """The head's forward as vLLM runs it (``norm_before_residual`` off, no fc norms), for training."""

    def __init__(self, config: LlamaConfig, target_hidden: int, num_aux: int = 3) -> None:
        super().__init__()
        self.config = config
        self.fc = nn.Linear(num_aux * target_hidden, config.hidden_size, bias=False)
        self.midlayer = _MidLayer(config)
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.draft_vocab_size, bias=False)
        self.rotary = LlamaRotaryEmbedding(config)

    def forward(self, embeddings: list[torch.Tensor], aux: torch.Tensor) -> list[torch.Tensor]:
        """The normed hidden states (T, H) of drafting steps 1..len(embeddings) from every base position i of one
        sequence (``lm_head`` of them gives the logits; training applies it where there is a label).

        Step 1 at i reads fc(aux states at i) and ``embeddings[0][i]`` (token i + 1); step s reads the pre-norm output
        of step s - 1 at i and ``embeddings[s - 1][i]`` (token i + s), at rope position i + s - 1, and attends to the
        step-1 keys of positions <= i and to its own earlier steps at i: the keys vLLM's draft KV cache holds when it
        drafts step s after position i (EAGLE-3's "training-time test")."""
        layer, attention = self.midlayer, self.midlayer.self_attn
        length = aux.shape[0]
        base = torch.arange(length, device=aux.device)
        causal = base[None, :] <= base[:, None]  # step-1 keys j <= i
        hidden = self.fc(aux)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        outputs = []
        for step, embedding in enumerate(embeddings):
            rope = self.rotary(embedding[None], (base + step)[None])
            residual = hidden
            x = torch.cat([layer.input_layernorm(embedding), layer.hidden_norm(hidden)], dim=-1)
            q, k, v = attention.qkv(x, rope)
            keys.append(k)
            values.append(v)
            groups = attention.heads // attention.kv_heads
            scale = attention.head_dim**-0.5
            first_k, first_v = keys[0].repeat_interleave(groups, 0), values[0].repeat_interleave(groups, 0)
            scores = [(q @ first_k.transpose(1, 2) * scale).masked_fill(~causal, float("-inf"))]
            scores += [(q * kk.repeat_interleave(groups, 0)).sum(-1, keepdim=True) * scale for kk in keys[1:]]
            weights = torch.softmax(torch.cat(scores, dim=-1), dim=-1)
            out = weights[..., :length] @ first_v
            for index, vv in enumerate(values[1:]):
                out = out + weights[..., length + index : length + index + 1] * vv.repeat_interleave(groups, 0)
            attended = attention.o_proj(out.transpose(0, 1).reshape(length, -1))
            residual = attended + residual
            hidden = layer.mlp(layer.post_attention_layernorm(residual)) + residual  # pre-norm: the next step's input
            outputs.append(self.norm(hidden))
        return outputs


def draft_vocabulary(replies: list[list[int]], size: int, vocab: int, always: list[int]) -> np.ndarray:
    """SpecForge's default draft vocabulary: the ``size`` ids most used in the replies (``always`` first, then by
    count, ties by lower id; unused ids fill it by lower id), sorted ascending as ``d2t`` wants."""
    counts = np.bincount(np.concatenate([np.asarray(r, dtype=np.int64) for r in replies]), minlength=vocab)[:vocab]
    counts = counts.astype(np.float64)
    counts[np.asarray(always, dtype=np.int64)] = np.inf
    order = np.lexsort((np.arange(vocab), -counts))
    return np.sort(order[: min(size, vocab)])


@torch.no_grad()
def collect(target: Any, sequences: list[list[int]], starts: list[int], aux_layers: list[int]) -> list[dict[str, Any]]:
    """Per sequence, from one target forward: its ids, the aux states (fp32, CPU) and the target's greedy token at
    each position, with the first position whose prediction is in the reply (``starts``: the prompt lengths)."""
    rows = []
    for ids, start in tqdm(list(zip(sequences, starts)), desc="target hidden states", unit="seq"):
        tensor = torch.tensor([ids], device=target.device)
        out = target(input_ids=tensor, output_hidden_states=True)
        aux = torch.cat([out.hidden_states[layer] for layer in aux_layers], dim=-1)[0].float().cpu()
        rows.append({"ids": tensor[0].cpu(), "aux": aux, "greedy": out.logits[0].argmax(-1).cpu(), "start": start})
    return rows


def train_head(
    target: Any,
    rows: list[dict[str, Any]],
    config: LlamaConfig,
    kept: np.ndarray,
    *,
    epochs: int = 3,
    lr: float = 1e-3,
    tokens_per_step: int = 2048,
    steps: int = 2,
    seed: int = 0,
) -> tuple[Eagle3Head, dict[str, Any]]:
    """Train a head: cross-entropy on the target's greedy tokens over the reply positions whose token is in the draft
    vocabulary, for drafting steps 1..``steps`` (weights 0.8^(s-1)). The LM head starts from the target's rows of
    the kept ids."""
    torch.manual_seed(seed)
    text = target.config.get_text_config()
    head = Eagle3Head(config, text.hidden_size, num_aux=rows[0]["aux"].shape[-1] // text.hidden_size)
    embedding = target.get_input_embeddings().weight.detach().float().cpu()
    with torch.no_grad():
        head.lm_head.weight.copy_(target.get_output_embeddings().weight.detach().float().cpu()[torch.as_tensor(kept)])
    to_draft = torch.full((text.vocab_size,), -100, dtype=torch.long)
    to_draft[torch.as_tensor(kept)] = torch.arange(len(kept))
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    order_steps = []
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()
        batch: list[int] = []
        for index in order:
            batch.append(index)
            if sum(len(rows[i]["ids"]) for i in batch) >= tokens_per_step:
                order_steps.append(batch)
                batch = []
        if batch:
            order_steps.append(batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 20) * 0.5 * (1 + math.cos(math.pi * step / len(order_steps)))
    )
    losses, correct, counted = [], 0, 0
    head.train()
    for batch in tqdm(order_steps, desc="training the EAGLE-3 head", unit="step"):
        loss_sum, tokens = torch.zeros(()), 0
        for index in batch:
            row = rows[index]
            ids, aux, greedy = row["ids"], row["aux"], row["greedy"]
            n = len(ids) - 1 - steps  # base positions 0..n-1; step s reads token i + 1 + s, predicts greedy[i + 1 + s]
            if n <= 0:
                continue
            embeddings = [embedding[ids[1 + s : n + 1 + s]] for s in range(steps)]
            for s, normed in enumerate(head(embeddings, aux[:n])):
                labels = to_draft[greedy[1 + s : n + 1 + s]]
                labels[: max(row["start"] - 2 - s, 0)] = -100  # only the reply's tokens are trained
                valid = labels >= 0
                if not bool(valid.any()):
                    continue
                logits = head.lm_head(normed[valid])
                weight = 0.8**s  # EAGLE-3's decay over the steps
                loss_sum = loss_sum + weight * F.cross_entropy(logits, labels[valid], reduction="sum")
                if s == 0:
                    correct += int((logits.argmax(-1) == labels[valid]).sum())
                    tokens += int(valid.sum())
        if tokens:
            (loss_sum / tokens).backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(float(loss_sum.detach()) / tokens)
        schedule.step()
        counted += tokens
    head.eval()
    info = {
        "steps": len(order_steps),
        "epochs": epochs,
        "training_tokens": int(sum(int((to_draft[r["greedy"][1:]] >= 0).sum()) for r in rows)),
        "drafting_steps_trained": steps,
        "final_loss": float(np.mean(losses[-5:])) if losses else None,
        "train_top1": correct / counted if counted else None,  # step 1, over all steps, as the head learned
    }
    return head, info


def save(head: Eagle3Head, kept: np.ndarray, folder: str | Path, info: dict[str, Any] | None = None) -> Path:
    """``config.json`` and ``model.safetensors`` as vLLM / SGLang / SpecForge load them (``midlayer.*``, ``fc``,
    ``norm``, ``lm_head`` of the kept rows, ``d2t`` offsets, ``t2d`` mask)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = head.config
    data = config.to_dict()
    data.update(
        architectures=["LlamaForCausalLMEagle3"],
        draft_vocab_size=int(len(kept)),
        eagle_config=config.eagle_config,
        torch_dtype="float32",
    )
    if info:
        data["fixture"] = info
    (folder / "config.json").write_text(json.dumps(data, indent=2) + "\n")
    tensors = {name: tensor.detach().contiguous() for name, tensor in head.state_dict().items()}
    tensors = {name: t for name, t in tensors.items() if not name.startswith("rotary")}
    ids = torch.as_tensor(np.asarray(kept), dtype=torch.long)
    t2d = torch.zeros(config.vocab_size, dtype=torch.bool)
    t2d[ids] = True
    tensors["d2t"] = ids - torch.arange(len(ids))
    tensors["t2d"] = t2d
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder
