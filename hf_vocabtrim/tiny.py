# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""Tiny, offline building blocks for the demo and the tests: a byte-level BPE tokenizer with a ChatML template,
embedded chat data, and random-weight causal LMs of the supported architectures."""

from __future__ import annotations

import itertools
import random
from typing import Any

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_TOPICS = ["lists", "dictionaries", "strings", "files", "loops", "classes", "tests", "errors", "numbers", "sorting"]
_ACTIONS = ["reverse", "sort", "count", "filter", "merge", "print", "parse", "validate", "sum", "copy"]
_SNIPPETS = [
    "def {a}_{t}(items):\n    return sorted(items)\n",
    "for i, item in enumerate({t}):\n    print(i, item)\n",
    "result = [x for x in {t} if x]\nreturn result\n",
    "with open('{t}.txt') as handle:\n    data = handle.read()\n",
    "class {T}Helper:\n    def {a}(self, value):\n        return value\n",
]
_PROSE = [
    "Sure! To {a} {t} in Python you can use a short function.",
    "Here is a simple way to {a} {t}: keep the code small and test it.",
    "You can {a} {t} with a comprehension, which is fast and readable.",
    "The error means the {t} are empty; check the input before you {a} them.",
]


def demo_chats(n: int = 240, seed: int = 0) -> list[dict[str, Any]]:
    """Deterministic synthetic chats (code-assistant style, some multi-turn, some with a system prompt)."""
    rng = random.Random(seed)
    chats = []
    for i in range(n):
        t, a = rng.choice(_TOPICS), rng.choice(_ACTIONS)
        answer = (
            rng.choice(_PROSE).format(a=a, t=t)
            + "\n```python\n"
            + rng.choice(_SNIPPETS).format(a=a, t=t, T=t.capitalize())
            + "```"
        )
        messages = [
            {"role": "user", "content": f"How do I {a} {t} in Python?"},
            {"role": "assistant", "content": answer},
        ]
        if i % 3 == 0:
            messages = [{"role": "system", "content": "You are a concise coding assistant."}, *messages]
        if i % 4 == 0:
            messages += [
                {"role": "user", "content": "Thanks! And the test?"},
                {"role": "assistant", "content": f"def test_{a}():\n    assert {a}_{t}([2, 1]) == [1, 2]"},
            ]
        chats.append({"messages": messages})
    return chats


def build_tiny_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained on the demo chats, with a ChatML chat template (fast, offline)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = [m["content"] for chat in demo_chats(400, seed=1) for m in chat["messages"]]
    backend.train_from_iterator(itertools.chain(corpus, ["<|im_start|>assistant\n", "user\nsystem\n"]), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        chat_template=CHATML_TEMPLATE,
        additional_special_tokens=["<|im_start|>"],
    )


# initializer_range is raised where the default gives a random model that repeats one token forever.
_BASE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 256,
}
TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {**_BASE, "tie_word_embeddings": False},
    "qwen2": {**_BASE, "tie_word_embeddings": True, "initializer_range": 0.2},
    "qwen3": {**_BASE, "head_dim": 8, "tie_word_embeddings": True, "initializer_range": 0.2},
    "mistral": {**_BASE, "sliding_window": 64},
    "gemma2": {
        **_BASE,
        "head_dim": 8,
        "final_logit_softcapping": 5.0,
        "query_pre_attn_scalar": 8,
        "sliding_window": 64,
    },
    "gemma3_text": {
        **_BASE,
        "head_dim": 8,
        "final_logit_softcapping": 5.0,
        "query_pre_attn_scalar": 8,
        "sliding_window": 64,
    },
    "phi3": {**_BASE, "pad_token_id": 0, "tie_word_embeddings": False},
    "gpt2": {"n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 256, "initializer_range": 0.2},
}


def tiny_config(model_type: str, vocab_size: int, eos_token_id: int = 2, **overrides: Any) -> Any:
    """A tiny transformers config of ``model_type`` with ``vocab_size`` ids."""
    from transformers import AutoConfig

    kwargs = {
        **TINY_CONFIGS[model_type],
        "vocab_size": vocab_size,
        "eos_token_id": eos_token_id,
        "bos_token_id": eos_token_id,
        **overrides,
    }
    kwargs.setdefault("pad_token_id", eos_token_id)
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_causal_lm(model_type: str, vocab_size: int, seed: int = 0, eos_token_id: int = 2, **overrides: Any) -> Any:
    """A random-weight ``AutoModelForCausalLM`` of ``model_type`` (eval mode, fp32, eager attention)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = tiny_config(model_type, vocab_size, eos_token_id=eos_token_id, **overrides)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.generation_config.pad_token_id = config.pad_token_id
    return model.eval()
