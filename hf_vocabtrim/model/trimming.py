# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""A keep plan applied to a draft: the :class:`~hf_vocabtrim.TrimmedDraftModel` that keeps exactly the plan's ids."""

from __future__ import annotations

from typing import Any

from ..data.counts import TokenCounts, vocab_hash
from ..selection.keep_plan import KeepPlan
from .modeling_trimmed_draft import TrimmedDraftModel


def trim_draft(
    draft: Any,
    plan: KeepPlan,
    k: int | None = None,
    *,
    tokenizer: Any = None,
    target: Any = None,
    counts: TokenCounts | None = None,
    context_tokens: bool | None = None,
    trimming: dict[str, Any] | None = None,
    assistant_settings: dict[str, Any] | None = None,
    fast_path: str = "auto",
) -> TrimmedDraftModel:
    """Trim ``draft`` to the first k ids of ``plan`` (default: the plan's own k); the special ids are in the plan.

    ``tokenizer`` and ``counts`` are checked against the plan's tokenizer hash; ``counts`` also give the coverage
    recorded in ``config.trimming``. ``context_tokens``, ``fast_path``: see :meth:`TrimmedDraftModel.from_draft`."""
    if tokenizer is not None and vocab_hash(tokenizer) != plan.vocab_hash:
        raise ValueError(
            f"the keep plan was made with another tokenizer (hash {plan.vocab_hash}) than the one given "
            f"({vocab_hash(tokenizer)}); count and optimise again with the draft's own tokenizer."
        )
    draft_vocab = int(draft.config.get_text_config().vocab_size)
    if plan.vocab_size != draft_vocab:
        raise ValueError(
            f"the keep plan covers V={plan.vocab_size} ids but the draft has V={draft_vocab}; make the plan with this "
            "draft's config (`vocabtrim optimize --draft-config`)."
        )
    k = plan.k if k is None else k
    kept = plan.kept_ids(k)
    info: dict[str, Any] = {"k": k, "vocab_size": plan.vocab_size, "plan_fingerprint": plan.fingerprint}
    if counts is not None:
        info["coverage"] = plan.coverage(counts, k)
        info["counts"] = {key: counts.metadata[key] for key in ("source", "num_conversations", "num_tokens", "mode")}
    return TrimmedDraftModel.from_draft(
        draft,
        kept,
        tokenizer=tokenizer,
        target=target,
        keep_special_tokens=False,
        context_tokens=context_tokens,
        trimming={**info, **(trimming or {})},
        assistant_settings=assistant_settings,
        fast_path=fast_path,
    )
