"""Speculative sampling with a trimmed draft keeps the target's output distribution (statistical test).

A tiny vocabulary (V=12), a draft with other weights than the target and a kept set of 5 ids: the draft's q is far
from the target's p and most of p lies outside the kept set. The empirical distribution of the first two sampled
tokens is compared with the target's exact marginals by a chi-square test. As a control, the same test must reject
a draft whose reported q leaks probability onto trimmed-away ids (the failure the scatter prevents).
"""

from __future__ import annotations

import pytest
import torch
from transformers.generation.candidate_generator import AssistedCandidateGenerator

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.tiny import tiny_causal_lm

from .helpers import PATHS, use_path

V, N = 12, 700


def _chi2_pvalue(observed: torch.Tensor, expected_p: torch.Tensor) -> float:
    n = observed.sum()
    expected = expected_p * n
    valid = expected > 0
    stat = ((observed[valid] - expected[valid]) ** 2 / expected[valid]).sum()
    df = int(valid.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(df / 2.0, dtype=torch.float64), stat.double() / 2.0))


def _exact_marginals(target, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The target's own distribution of tokens 1 and 2 (the models have no eos: generation always makes two)."""
    with torch.no_grad():
        p1 = target(prompt).logits[0, -1].softmax(-1).double()
        seconds = torch.cat([prompt.repeat(V, 1), torch.arange(V)[:, None]], dim=1)
        p2_given = target(seconds).logits[:, -1].softmax(-1).double()
    return p1, p1 @ p2_given


def _sample_counts(target, draft, prompt: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    first, second = torch.zeros(V), torch.zeros(V)
    for _ in range(N):
        out = target.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=2,
            do_sample=True,
            top_k=0,
            top_p=1.0,
            temperature=1.0,
            assistant_model=draft,
        )
        first[out[0, -2]] += 1
        second[out[0, -1]] += 1
    return first, second


def _setup(context: bool, path: str = "eager"):
    target = tiny_causal_lm("llama", V, seed=0, eos_token_id=None, initializer_range=0.3)
    draft = tiny_causal_lm("llama", V, seed=5, eos_token_id=None, initializer_range=0.3)
    trimmed = TrimmedDraftModel.from_draft(
        draft,
        [1, 3, 4, 7, 9],
        keep_special_tokens=False,
        context_tokens=context,  # with context: the prompt's 2, 5, 6 and sampled ids are scored too
        assistant_settings={"num_assistant_tokens": 2},
    )
    use_path(trimmed, path)
    prompt = torch.tensor([[2, 5, 6]])
    p1, p2 = _exact_marginals(target, prompt)
    return target, trimmed, prompt, p1, p2


@pytest.fixture(
    scope="module",
    params=[(context, path) for context in (False, True) for path in PATHS],
    ids=[f"{'context' if context else 'static'}-{path}" for context in (False, True) for path in PATHS],
)
def setup(request):
    return _setup(*request.param)


@pytest.mark.slow
def test_sampling_matches_target_distribution(setup):
    target, trimmed, prompt, p1, p2 = setup
    outside = torch.ones(V, dtype=torch.bool)
    outside[trimmed.kept_ids] = False
    if trimmed.config.context_tokens:
        outside[prompt[0]] = False
    assert p1[outside].sum() > 0.3, "the test needs target mass outside the scored set"
    first, second = _sample_counts(target, trimmed, prompt, seed=1)
    assert first[outside].sum() > 0, "tokens outside the kept set must still be sampled (from the residual)"
    assert _chi2_pvalue(first, p1) > 1e-3
    assert _chi2_pvalue(second, p2) > 1e-3


@pytest.mark.slow
def test_control_leaky_q_is_detected(monkeypatch):
    """Control: report q with trimmed-away ids at the kept ids' mean logit; the chi-square test must fail."""
    target, trimmed, prompt, p1, _ = _setup(context=False)
    generate = AssistedCandidateGenerator._generate_candidates

    def leaky(gen, args):
        ids, logits = generate(gen, args)
        finite = torch.isfinite(logits)
        fill = (logits.masked_fill(~finite, 0).sum(-1, keepdim=True) / finite.sum(-1, keepdim=True)).expand_as(logits)
        return ids, torch.where(finite, logits, fill)

    monkeypatch.setattr(AssistedCandidateGenerator, "_generate_candidates", leaky)
    first, _ = _sample_counts(target, trimmed, prompt, seed=2)
    assert _chi2_pvalue(first, p1) < 1e-3
