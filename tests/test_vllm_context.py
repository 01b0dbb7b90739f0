"""Context tokens served by vLLM's CPU build: a trimmed draft whose folder has ``context_tokens`` on also scores, per
request, the ids already in that request's sequence (``engines/vllm_model.py``). Tiny models (``tests/vllm_models.py``)
with prefix caching and chunked prefill on (prompts split into chunks, mixed prefill/decode batches, repeated prompts
served from the prefix cache)."""

from __future__ import annotations

import pytest

from hf_vocabtrim import TokenCounts, commands
from hf_vocabtrim.engines.vllm_serve import speculative_config

from . import vllm_models
from .test_vllm import SAMPLES, _chi2_pvalue, _second_token_marginal, _second_tokens, _serve

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

ENGINE = {"enable_prefix_caching": True, "enable_chunked_prefill": True, "max_num_batched_tokens": 32}
ALL, ALONE_0, ALONE_1, PAIR = 0, 1, 2, 3  # request groups, in this order on every engine


def _groups(sampling: bool = False) -> list[dict]:
    every = list(range(vllm_models.PROMPTS))
    groups = [{"prompts": every}, {"prompts": [0]}, {"prompts": [1]}, {"prompts": [0, 1]}]
    groups = [{**g, "max_tokens": vllm_models.NEW_TOKENS} for g in groups]
    if sampling:
        groups.append(
            {"prompts": [0] * SAMPLES, "max_tokens": 2, "temperature": 1.0}
        )  # engine seed (per-request seeds + chunked prefill fail on CPU in vLLM 0.32)
    return groups


def _trim(models: dict, kept: set[int], name: str, context: bool) -> str:
    """A trimmed draft keeping ``kept`` (and the specials `trim` always keeps), context tokens on or off."""
    replies = TokenCounts.load(models["counts"])
    counts = replies.counts.copy() * 0
    counts[sorted(kept)] = 1
    path = models["folder"] / f"{name}_counts.json"
    TokenCounts(counts, replies.tokenizer_name, replies.vocab_size, replies.vocab_hash, replies.num_conversations,
                int(counts.sum()), mode=replies.mode, source=replies.source, extra=replies.extra,
                ).save(path)  # fmt: skip
    out = models["folder"] / name
    flag = "--context-tokens" if context else "--no-context-tokens"
    argv = ["trim", "--draft", models["draft"], "--counts", str(path), "--k", str(len(kept) + 8), flag, "--out"]
    assert commands.main([*argv, str(out)]) == 0
    return str(out)


@pytest.fixture(scope="module")
def served(models, vllm_python):
    """The untrimmed draft, then drafts keeping every id it proposed except those in the proposing request's own
    prompt, with context tokens (which score the prompt's ids) and without."""
    runs = {"draft": _serve(vllm_python, models, speculative_config("draft_model", models["draft"]), _groups(),
                            record_drafts=True, engine_args=ENGINE)}  # fmt: skip
    proposals = runs["draft"]["groups"][ALL]["drafts"]
    prompts = models["prompts"]
    kept = set().union(*({i for rnd in rounds for i in rnd} - set(prompts[r]) for r, rounds in enumerate(proposals)))
    needed = {i for rounds in proposals for rnd in rounds for i in rnd}
    folders = {"context": _trim(models, kept, "ctx_draft", True), "static": _trim(models, kept, "static_draft", False)}
    for name, folder in folders.items():
        runs[name] = _serve(vllm_python, models, speculative_config("draft_model", folder),
                            _groups(sampling=name == "context"), record_drafts=True, engine_args=ENGINE)  # fmt: skip
    probabilistic = {**speculative_config("draft_model", folders["context"]), "draft_sample_method": "probabilistic"}
    runs["probabilistic"] = _serve(vllm_python, models, probabilistic, _groups(sampling=True)[-1:], engine_args=ENGINE)
    return {"runs": runs, "kept": kept, "needed": needed, "folders": folders}


def test_context_tokens_are_lossless_and_propose_what_the_untrimmed_draft_proposes(served, models):
    """Every id the untrimmed draft proposed is kept or in the proposing request's prompt: with context tokens the
    trimmed draft accepts exactly what the untrimmed draft accepts, per position; the same kept set served static
    accepts less. Every greedy output is the target's."""
    runs, kept, needed = served["runs"], served["kept"], served["needed"]
    assert needed - kept  # some proposals are left to the context
    for name in ("draft", "context", "static"):
        for group, served_prompts in zip(runs[name]["groups"], [g["prompts"] for g in _groups()]):
            assert group["outputs"] == [models["replies"][i] for i in served_prompts], name
    draft, context, static = (runs[n]["groups"][ALL]["metrics"] for n in ("draft", "context", "static"))
    assert draft["accepted"] > draft["drafts"]
    assert context["per_position"] == draft["per_position"] and context["accepted"] == draft["accepted"]
    assert static["acceptance_length"] < context["acceptance_length"]
    assert runs["context"]["groups"][ALL]["drafts"] == runs["draft"]["groups"][ALL]["drafts"]


def test_no_request_scores_another_requests_ids(served, models):
    """Two prompts with private ids (ids of one prompt that are neither kept nor in the other request's sequence),
    served alone and together (one batch, chunked prefill, prefix cache): each drafts the same proposals either
    way, and neither ever proposes an id only the other request could score."""
    groups = served["runs"]["context"]["groups"]
    prompts, replies, kept = models["prompts"], models["replies"], served["kept"]
    private = [set(prompts[i]) - kept - set(prompts[1 - i]) - set(replies[1 - i]) for i in (0, 1)]
    assert private[0] and private[1]
    together = groups[PAIR]["drafts"]
    assert together[0] == groups[ALONE_0]["drafts"][0] and together[1] == groups[ALONE_1]["drafts"][0]
    for i in (0, 1):
        proposed = {t for rnd in together[i] for t in rnd}
        assert not proposed & (private[1 - i] - set(prompts[i]) - set(replies[i]))


def test_context_tokens_keep_the_targets_distribution_when_sampling(served, models):
    """Seeded sampling at temperature 1 with the context draft, argmax drafts and vLLM's probabilistic drafts (q from
    the draft's own V-wide scores): the second token (the first drafted one) follows the target's exact marginal."""
    marginal = _second_token_marginal(models)
    for name in ("context", "probabilistic"):
        sampled = served["runs"][name]["groups"][-1]
        assert sampled["metrics"]["drafts"] >= SAMPLES
        assert _chi2_pvalue(_second_tokens(sampled), marginal) > 1e-3, name
