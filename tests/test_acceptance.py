"""The acceptance model: per-position k intervals, the greedy walk, and exact agreement with generate()."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.acceptance import match_intervals, matches_for_ks, predicted_speedup, tokens_per_step
from hf_vocabtrim.instrument import record_assisted
from hf_vocabtrim.tiny import tiny_causal_lm


def test_intervals_equal_brute_force_restricted_argmax():
    generator = torch.Generator().manual_seed(0)
    vocab, length = 40, 30
    logits = torch.randn(length, vocab, generator=generator)
    next_ids = torch.randint(0, vocab, (length,), generator=generator)
    next_ids[:10] = logits[:10].argmax(-1)  # some positions the full draft gets right
    order = torch.randperm(vocab, generator=generator)
    rank = torch.empty(vocab, dtype=torch.long)
    rank[order] = torch.arange(vocab)
    lo, hi = match_intervals(logits, next_ids, rank)
    ks = list(range(1, vocab + 1))
    fast = matches_for_ks(lo, hi, ks)
    for row, k in enumerate(ks):
        kept = order[:k]
        brute = kept[logits[:, kept].argmax(-1)] == next_ids
        assert np.array_equal(fast[row], brute.numpy()), k


def test_walk():
    m = np.array([[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0] * 12, [1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1]], dtype=bool)
    taus = tokens_per_step(m, gamma=5)
    assert taus[0] == 6.0  # 5 accepted + 1 bonus per step
    assert taus[1] == 1.0
    assert taus[2] == pytest.approx(12 / 5)  # steps: [1,1,x] [1,1,1,1,1,+1] [x] [x] [1]
    assert predicted_speedup(np.array([3.0]), np.array([1.0]), 10.0, 10.0, 5)[0] == pytest.approx(2.0)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_predicted_tau_equals_measured_tau_along_target_output(seed):
    vocab, gamma = 96, 4
    # no eos: generation runs to max_new_tokens with no logits processor (the teacher-forced logits are raw too)
    target = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=None, initializer_range=0.15)
    draft = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=None, initializer_range=0.15)
    with torch.no_grad():  # a draft close to the target: mixed accept / reject rounds
        for p in draft.parameters():
            p.add_(0.04 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    order = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed)).numpy()
    rank = torch.empty(vocab, dtype=torch.long)
    rank[torch.as_tensor(order)] = torch.arange(vocab)
    prompt = torch.tensor([[5, 17, 33, 2, 9]])
    kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 40, "do_sample": False}
    reference = target.generate(**kwargs)
    generated = reference[0, prompt.shape[-1] :]
    with torch.no_grad():
        lo, hi = match_intervals(draft(reference).logits[0, prompt.shape[-1] - 1 : -1], generated, rank)
    for k in (24, 48, vocab):
        predicted = tokens_per_step(matches_for_ks(lo, hi, [k]), gamma)[0]
        kept = np.sort(order[:k])
        trimmed = TrimmedDraftModel.from_draft(
            draft, kept, keep_special_tokens=False, assistant_settings={"num_assistant_tokens": gamma}
        )
        with record_assisted() as stats:
            assert torch.equal(target.generate(**kwargs, assistant_model=trimmed), reference)
        measured = len(generated) / stats.rounds
        assert predicted == pytest.approx(measured), (k, predicted, measured)
