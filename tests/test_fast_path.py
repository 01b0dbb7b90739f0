"""The static-cache drafting path (``fast_path="static"``) and its CPU twin of CUDA-graph capture: the same proposals
as the eager path, exact rollback, new prompts, prompts longer than the cache, the fallbacks, and a decode step that
compiles with ``fullgraph=True`` (static shapes, no host synchronisation). Lossless greedy on every architecture and
the chi-square sampling test run through these paths in test_modeling.py and test_sampling.py."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import DynamicCache, GenerationConfig

from hf_vocabtrim import TrimmedDraftConfig, TrimmedDraftModel
from hf_vocabtrim.measure.instrument import record_assisted
from hf_vocabtrim.model import fast_path
from hf_vocabtrim.model.fast_path import StaticDrafter
from hf_vocabtrim.model.modeling_trimmed_draft import ContextSlots, scatter_to_full_vocab
from hf_vocabtrim.tiny import TINY_CONFIGS, demo_chats, tiny_causal_lm

from .helpers import use_path

ARCHS = sorted(TINY_CONFIGS)


def _prompts(tokenizer, n: int) -> list[torch.Tensor]:
    out = []
    for chat in demo_chats(n, seed=3):
        messages = [m for m in chat["messages"] if m["role"] != "assistant"][:2]
        rendered = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )
        out.append(rendered["input_ids"])
    return out


def _assistant_config(eos: int, do_sample: bool = False) -> GenerationConfig:
    """A generation config as transformers' candidate generator passes it to the assistant."""
    return GenerationConfig(
        do_sample=do_sample, is_assistant=True, eos_token_id=eos, output_scores=True, return_dict_in_generate=True
    )


def _pair(arch: str, tokenizer, context: bool, seed: int = 0):
    vocab = len(tokenizer)
    target = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=tokenizer.eos_token_id)
    draft = tiny_causal_lm(arch, vocab, seed=seed, eos_token_id=tokenizer.eos_token_id)
    trimmed = TrimmedDraftModel.from_draft(
        draft, range(0, vocab, 3), tokenizer=tokenizer, target=target, context_tokens=context
    )
    return target, draft, trimmed


@pytest.mark.parametrize("arch", ARCHS)
def test_static_and_captured_twin_propose_exactly_what_the_eager_path_proposes(arch, tiny_tokenizer):
    for context in (False, True):
        target, _, trimmed = _pair(arch, tiny_tokenizer, context)
        drafted = {}
        for path in ("eager", "static", "captured-twin"):
            use_path(trimmed, path)
            drafted[path] = []
            for prompt in _prompts(tiny_tokenizer, 6):
                kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 20}
                with record_assisted() as stats:
                    target.generate(**kwargs, do_sample=False, assistant_model=trimmed)
                drafted[path] += [d.tolist() for d in stats.drafted]
        assert drafted["static"] == drafted["eager"] == drafted["captured-twin"], (arch, context)
        if arch == "qwen2":  # the drafter held the sequence between rounds: no prefill after the first round
            drafter = fast_path.drafter_of(trimmed)
            assert drafter.capture == "twin" and set(drafter.steps) == {1, 2}


class _Counting(StaticDrafter):
    """Records the length of every feed (a prefill is a feed of more than 2 ids)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fed: list[int] = []

    def _feed(self, ids):
        self.fed.append(ids.shape[1])
        return super()._feed(ids)


@pytest.mark.parametrize("capture", [None, "twin"], ids=["static", "captured-twin"])
@pytest.mark.parametrize("context", [False, True], ids=["static-set", "context"])
def test_rollback_new_prompt_and_prompt_longer_than_the_cache(capture, context, tiny_tokenizer):
    _, draft, trimmed = _pair("qwen2", tiny_tokenizer, context, seed=1)
    eos = tiny_tokenizer.eos_token_id
    config = _assistant_config(eos)
    drafter = _Counting(trimmed, capture=capture)

    def fresh(ids: torch.Tensor, new: int = 5):
        """The same call on a new drafter (a new cache) and through transformers' own eager generate()."""
        alone = StaticDrafter(trimmed, capture=capture).generate(ids, config, [], max_new_tokens=new)
        trimmed.config.fast_path = "eager"
        eager = trimmed.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=new, do_sample=False, output_scores=True,
            return_dict_in_generate=True, eos_token_id=eos,
        )  # fmt: skip
        trimmed.config.fast_path = "static"
        return alone, eager

    def check(out, ids, new: int = 5):
        alone, eager = fresh(ids, new)
        assert torch.equal(out.sequences, alone.sequences) and torch.equal(out.sequences, eager.sequences)
        for mine, theirs in zip(out.scores, eager.scores):
            torch.testing.assert_close(mine, theirs)  # V-wide, -inf outside the scored ids, as the verifier reads them
        assert len(drafter.ids) == ids.shape[1] + len(out.scores) - 1  # every proposal but the last was fed

    prompt = _prompts(tiny_tokenizer, 1)[0]
    first = drafter.generate(prompt, config, [], max_new_tokens=5)
    check(first, prompt)
    proposals = first.sequences[:, prompt.shape[1] :]
    assert proposals.shape[1] == 5
    # partial acceptance: two proposals accepted, then the target's own token (not the third proposal)
    other = (proposals[:, 2:3] + 1) % len(tiny_tokenizer)
    accepted = torch.cat([prompt, proposals[:, :2], other], dim=-1)
    drafter.fed.clear()
    second = drafter.generate(accepted, config, [], max_new_tokens=5, cache=first.cache)
    check(second, accepted)
    assert drafter.fed[0] == 1, "after a rollback only the new id is fed, through the captured one-id step"
    # every proposal accepted plus the target's token: the last proposal and the new token are fed in one step
    full = torch.cat([second.sequences, torch.tensor([[7]])], dim=-1)
    drafter.fed.clear()
    third = drafter.generate(full, config, [], max_new_tokens=5, cache=second.cache)
    check(third, full)
    assert drafter.fed == [2, 1, 1, 1, 1]
    # a new prompt: a new sequence; the common prefix (the chat template's) is kept, the rest prefilled
    new_prompt = _prompts(tiny_tokenizer, 2)[1]
    drafter.fed.clear()
    check(drafter.generate(new_prompt, config, [], max_new_tokens=5), new_prompt)
    assert drafter.fed[0] < new_prompt.shape[1]
    # a prompt longer than the cache: a larger cache (and new graphs), the same proposals
    capacity = drafter.capacity
    long_prompt = torch.randint(3, len(tiny_tokenizer), (1, capacity + 40))
    out = drafter.generate(long_prompt, config, [], max_new_tokens=5)
    assert drafter.capacity > capacity
    check(out, long_prompt)


@pytest.mark.parametrize("arch", ["mistral", "gemma2", "gemma3_text"])
def test_sliding_window_architectures_beyond_the_window(arch, tiny_tokenizer):
    """The static cache keeps every position and the sliding-window mask does the windowing: past the window (64 in
    the tiny configs) the proposals and scores are the eager path's (whose cache slides)."""
    target, _, trimmed = _pair(arch, tiny_tokenizer, True, seed=1)
    prompt = torch.randint(3, len(tiny_tokenizer), (1, 150))
    out = StaticDrafter(trimmed).generate(prompt, _assistant_config(None), [], max_new_tokens=8)
    eager = trimmed.generate(
        prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False, output_scores=True,
        return_dict_in_generate=True, eos_token_id=None,
    )  # fmt: skip
    assert torch.equal(out.sequences, eager.sequences)
    for mine, theirs in zip(out.scores, eager.scores):
        torch.testing.assert_close(mine, theirs)
    kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 30}
    use_path(trimmed, "captured-twin")
    assert torch.equal(target.generate(**kwargs, assistant_model=trimmed), target.generate(**kwargs))


def test_modes_fallbacks_and_config(tiny_tokenizer, tmp_path, caplog):
    target, draft, trimmed = _pair("llama", tiny_tokenizer, False)
    assert trimmed.config.fast_path == "auto" and fast_path.mode(trimmed) == "eager"  # auto captures on CUDA only
    assert fast_path.mode(use_path(trimmed, "static")) == "static"
    trimmed.save_pretrained(tmp_path)
    assert TrimmedDraftConfig.from_pretrained(tmp_path).fast_path == "static"
    with pytest.raises(ValueError, match="fast_path"):
        TrimmedDraftModel.from_draft(draft, [4, 5], fast_path="graphs")
    assert TrimmedDraftModel.from_draft(draft, [4, 5], fast_path="eager").config.fast_path == "eager"
    # a confidence threshold needs a host sync per token: eager path, said once, still lossless
    prompt = _prompts(tiny_tokenizer, 1)[0]
    kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 12}
    reference = target.generate(**kwargs, do_sample=False)
    trimmed.generation_config.assistant_confidence_threshold = 0.3
    with caplog.at_level(logging.WARNING, logger="hf_vocabtrim.model.fast_path"):
        assert torch.equal(target.generate(**kwargs, do_sample=False, assistant_model=trimmed), reference)
    assert "confidence threshold" in caplog.text
    trimmed.generation_config.assistant_confidence_threshold = 0.0
    trimmed.draft.config._attn_implementation = "flash_attention_2"  # host syncs inside: never captured
    assert "synchronises with the host" in fast_path.unsupported_model(trimmed)
    assert fast_path.mode(trimmed) == "eager"
    trimmed.draft.config._attn_implementation = "eager"
    # a standalone generate() (not an assistant call) is transformers' own
    out = trimmed.generate(**kwargs, do_sample=False)
    assert out.shape[1] == prompt.shape[1] + 12


@pytest.mark.parametrize("arch", ["qwen2", "gemma3_text", "llama"])  # tied, sliding window + soft-capping, untied
def test_static_decode_step_compiles_fullgraph(arch, tiny_tokenizer):
    """The static step of a context-token draft (forward over the static cache, context slots, scatter to V) has no
    graph break: no data-dependent shape and no host synchronisation (what CUDA-graph capture needs)."""
    torch._dynamo.reset()
    _, _, trimmed = _pair(arch, tiny_tokenizer, True)
    drafter = StaticDrafter(use_path(trimmed, "static"))
    drafter.reserve(64)
    with torch.inference_mode():  # as the drafter runs every step, whatever the caller's grad mode
        drafter._forward(_prompts(tiny_tokenizer, 1)[0])
        step = torch.compile(drafter._forward, fullgraph=True, dynamic=False, backend="eager")
        token = torch.tensor([[7]])
        compiled = step(token)
        drafter.cache.crop(-1)
        plain = drafter._forward(token)
    assert torch.equal(torch.isfinite(compiled), torch.isfinite(plain))
    torch.testing.assert_close(compiled, plain)


def test_eager_context_step_compiles_fullgraph(tiny_tokenizer):
    """The eager path's context bookkeeping (fill by position, head rows, mask, scatter) is sync-free too."""
    torch._dynamo.reset()
    _, _, trimmed = _pair("qwen2", tiny_tokenizer, True)
    head = trimmed.draft.get_output_embeddings()
    weight, bias = trimmed._context_source()
    scorable = trimmed._scorable(weight.device)
    slots = ContextSlots(1, 64, head.weight, bias is not None)
    k, vocab = trimmed.kept_ids.numel(), trimmed.full_vocab_size

    def context_step(ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        slots.fill(ids, ids.shape[1], 20, weight, bias, scorable)
        head.slots = slots
        logits = head(hidden)
        logits = torch.cat([logits[..., :k], logits[..., k:].masked_fill(~slots.scored_now, float("-inf"))], -1)
        return scatter_to_full_vocab(logits, torch.cat([trimmed.kept_ids, slots.id_map()]), vocab, k)

    ids, hidden = torch.tensor([[5, 9]]), torch.randn(1, 1, head.weight.shape[1])
    with torch.no_grad():
        compiled = torch.compile(context_step, fullgraph=True, dynamic=False, backend="eager")(ids, hidden)
        plain = context_step(ids, hidden)
    torch.testing.assert_close(compiled, plain)
    head.slots = None


def test_repeated_context_ids_score_once_and_never_hide_a_score():
    scores = torch.tensor([[1.0, 2.0, 5.0, float("-inf"), 5.0]])
    id_map = torch.tensor([1, 3, 4, 1, 4])  # kept 1 and 3; context slots: 4, a masked repeat of 1, 4 again
    full = scatter_to_full_vocab(scores, id_map, 6, num_unique=2)
    assert full.tolist() == [[float("-inf"), 1.0, float("-inf"), 2.0, 5.0, float("-inf")]]


def test_eager_slots_grow_and_follow_the_cache(tiny_tokenizer):
    _, draft, trimmed = _pair("qwen2", tiny_tokenizer, True)
    cache = DynamicCache(config=trimmed.config.get_text_config())
    ids = torch.randint(3, len(tiny_tokenizer), (1, 300))
    with torch.no_grad():
        trimmed(input_ids=ids[:, :200], cache=cache, use_cache=True)
        trimmed(input_ids=ids[:, 200:], cache=cache, use_cache=True)
    slots = cache._vocabtrim_context_slots
    assert slots.capacity >= 300 and slots.width == 300 and torch.equal(slots.ids[0, :300], ids[0])
    scorable = trimmed._scorable(torch.device("cpu"))
    assert torch.equal(slots.scored[0, :300], scorable[ids[0]])
    cache.crop(-50)  # a rollback: the next forward overwrites from position 250
    with torch.no_grad():
        logits = trimmed(input_ids=torch.tensor([[9]]), cache=cache, use_cache=True).logits
    assert slots.width == 251 and logits.shape[-1] == trimmed.kept_ids.numel() + 251


def test_a_draft_kept_whole_gets_the_path_too(tiny_tokenizer):
    """ "Trimmed" to all V ids, a draft runs the static / captured path and proposes what the plain draft proposes."""
    vocab = len(tiny_tokenizer)
    target = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=tiny_tokenizer.eos_token_id)
    draft = tiny_causal_lm("llama", vocab, seed=1, eos_token_id=tiny_tokenizer.eos_token_id)
    draft.generation_config.update(num_assistant_tokens=5, num_assistant_tokens_schedule="constant")
    draft.generation_config.assistant_confidence_threshold = 0.0
    whole = TrimmedDraftModel.from_draft(draft, range(vocab), keep_special_tokens=False, context_tokens=False)
    use_path(whole, "captured-twin")
    for prompt in _prompts(tiny_tokenizer, 4):
        kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 16}
        drafted = []
        for assistant in (draft, whole):
            with record_assisted() as stats:
                target.generate(**kwargs, do_sample=False, assistant_model=assistant)
            drafted.append([d.tolist() for d in stats.drafted])
        assert drafted[0] == drafted[1]
    assert fast_path.drafter_of(whole).ids  # the path ran
