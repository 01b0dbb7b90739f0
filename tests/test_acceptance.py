"""The acceptance model: per-position k intervals (static and with context ids, ties as argmax breaks them), the greedy
walk, and exact agreement with the tau that generate() measures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hf_vocabtrim.selection.acceptance as acceptance
from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.measure.instrument import record_assisted
from hf_vocabtrim.model.modeling_trimmed_draft import scatter_to_full_vocab
from hf_vocabtrim.selection.acceptance import (
    context_rows,
    first_occurrence,
    match_intervals,
    matches_for_ks,
    target_steps,
    tokens_per_step,
)
from hf_vocabtrim.tiny import tiny_causal_lm


def _rank(order: torch.Tensor) -> torch.Tensor:
    rank = torch.empty(len(order), dtype=torch.long)
    rank[order] = torch.arange(len(order))
    return rank


def _brute_force(logits, next_ids, order, ks, sequence=None, start=0):
    """The draft's own pick: scatter the scored ids' logits into a V-wide -inf row, then torch.argmax."""
    vocab = logits.shape[-1]
    out = np.zeros((len(ks), len(next_ids)), dtype=bool)
    for row, k in enumerate(ks):
        for t in range(len(next_ids)):
            scored = set(order[:k].tolist())
            if sequence is not None:
                scored |= set(sequence[: start + t].tolist())  # ids fed so far (prompt + earlier outputs)
            ids = torch.tensor(sorted(scored), dtype=torch.long)
            full = scatter_to_full_vocab(logits[t, ids][None], ids, vocab)[0] if len(ids) else None
            out[row, t] = full is not None and int(full.float().argmax()) == int(next_ids[t])
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_intervals_equal_brute_force_with_ties_and_context(dtype, monkeypatch):
    monkeypatch.setattr(acceptance, "_CHUNK_ELEMENTS", 40 * 7)  # several chunks of 7 rows
    generator = torch.Generator().manual_seed(0)
    vocab, length, start = 40, 30, 6
    # few distinct values: many tied maxima (as in bf16 logits)
    logits = torch.randint(-3, 3, (length, vocab), generator=generator).to(dtype)
    sequence = torch.randint(0, vocab, (start + length,), generator=generator)
    next_ids = sequence[start:].clone()
    next_ids[:10] = logits[:10].float().argmax(-1)  # some positions the full draft gets right
    order = torch.randperm(vocab, generator=generator)
    rank = _rank(order)
    first = first_occurrence(sequence, vocab)
    positions = torch.arange(start - 1, start - 1 + length)
    iv = match_intervals(logits, next_ids, rank, first, positions)
    ks = list(range(1, vocab + 1))
    assert np.array_equal(matches_for_ks(iv.lo, iv.hi, ks), _brute_force(logits, next_ids, order, ks))
    with_context = _brute_force(logits, next_ids, order, ks, sequence, start)
    assert np.array_equal(matches_for_ks(iv.context_lo, iv.context_hi, ks), with_context)
    assert with_context.sum() > matches_for_ks(iv.lo, iv.hi, ks).sum()  # context ids add matches here


def test_first_occurrence_and_context_rows():
    sequence = torch.tensor([3, 1, 3, 4, 1, 0])
    first = first_occurrence(sequence, 6)
    assert first.tolist() == [5, 1, 6, 0, 3, 6]
    positions = np.array([2, 3, 4])  # 3, 4 and 5 ids fed: one context slot (LM-head row) each, whatever k is
    assert context_rows(positions, [0, 2, 4, 6]).tolist() == pytest.approx([4.0] * 4)


def test_walk():
    m = np.array([[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], [0] * 12, [1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 1]], dtype=bool)
    taus = tokens_per_step(m, gamma=5)
    assert taus[0] == 6.0  # 5 accepted + 1 bonus per step
    assert taus[1] == 1.0
    assert taus[2] == pytest.approx(12 / 5)  # steps: [1,1,x] [1,1,1,1,1,+1] [x] [x] [1]
    assert target_steps(m, 5).tolist() == [2, 12, 5]


@pytest.mark.parametrize("context", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_predicted_tau_equals_measured_tau_along_target_output(seed, context):
    vocab, gamma = 96, 4
    # no eos: generation runs to max_new_tokens with no logits processor (the teacher-forced logits are raw too)
    target = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=None, initializer_range=0.15)
    draft = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=None, initializer_range=0.15)
    with torch.no_grad():  # a draft close to the target: mixed accept / reject rounds
        for p in draft.parameters():
            p.add_(0.04 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    order = torch.randperm(vocab, generator=torch.Generator().manual_seed(seed))
    prompt = torch.tensor([[5, 17, 33, 2, 9, 61, 70, 88]])
    kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 40, "do_sample": False}
    reference = target.generate(**kwargs)
    start = prompt.shape[-1]
    generated = reference[0, start:]
    with torch.no_grad():
        iv = match_intervals(
            draft(reference).logits[0, start - 1 : -1],
            generated,
            _rank(order),
            first_occurrence(reference[0], vocab),
            torch.arange(start - 1, reference.shape[-1] - 1),
        )
    lo, hi = (iv.context_lo, iv.context_hi) if context else (iv.lo, iv.hi)
    differs = 0
    for k in (24, 48, vocab):
        predicted = tokens_per_step(matches_for_ks(lo, hi, [k]), gamma)[0]
        differs += predicted != tokens_per_step(matches_for_ks(iv.lo, iv.hi, [k]), gamma)[0]
        trimmed = TrimmedDraftModel.from_draft(
            draft,
            order[:k],
            keep_special_tokens=False,
            context_tokens=context,
            assistant_settings={"num_assistant_tokens": gamma},
        )
        with record_assisted() as stats:
            assert torch.equal(target.generate(**kwargs, assistant_model=trimmed), reference)
        measured = len(generated) / stats.rounds
        assert predicted == pytest.approx(measured), (k, predicted, measured)
    if context:
        assert differs > 0, "context ids should change tau at some k in this test"
