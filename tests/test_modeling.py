"""TrimmedDraftModel: losslessness, draft scores, acceptance, save/load, errors, for every supported architecture."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_vocabtrim import TrimmedDraftConfig, TrimmedDraftModel
from hf_vocabtrim.instrument import record_assisted
from hf_vocabtrim.tiny import TINY_CONFIGS, demo_chats, tiny_causal_lm

ARCHS = sorted(TINY_CONFIGS)


def _prompts(tokenizer, n: int = 20) -> list[torch.Tensor]:
    prompts = []
    for chat in demo_chats(n, seed=3):
        messages = [m for m in chat["messages"] if m["role"] != "assistant"][:2]
        prompts.append(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")[
                "input_ids"
            ]
        )
    return prompts


@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_assisted_equals_target_and_drafts_stay_in_kept_set(arch, tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    eos = tiny_tokenizer.eos_token_id
    target = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=eos)
    draft = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=eos)  # same weights: long accepted runs
    cases = []
    for prompt in _prompts(tiny_tokenizer, 20):
        kwargs = {
            "input_ids": prompt,
            "attention_mask": torch.ones_like(prompt),
            "max_new_tokens": 24,
            "do_sample": False,
        }
        cases.append((kwargs, target.generate(**kwargs)))
    # keep every other id the target emits, plus a random half of the rest: some target tokens are not kept
    emitted = torch.unique(torch.cat([ref[0, kw["input_ids"].shape[-1] :] for kw, ref in cases]))
    rest = torch.tensor(sorted(set(range(vocab)) - set(emitted.tolist())))
    keep = torch.cat(
        [emitted[::2], rest[torch.randperm(len(rest), generator=torch.Generator().manual_seed(1))][: len(rest) // 2]]
    )
    trimmed = TrimmedDraftModel.from_draft(draft, keep, tokenizer=tiny_tokenizer, target=target)
    kept = set(trimmed.kept_ids.tolist())
    emitted_outside = 0
    with record_assisted() as stats:
        for kwargs, reference in cases:
            assisted = target.generate(**kwargs, assistant_model=trimmed)
            assert torch.equal(reference, assisted), f"{arch}: assisted greedy output differs from the target's"
            emitted_outside += sum(t not in kept for t in reference[0, kwargs["input_ids"].shape[-1] :].tolist())
    assert emitted_outside > 0, "the test must cover target tokens outside the kept set"
    drafted = torch.cat(stats.drafted).tolist()
    assert drafted and set(drafted) <= kept
    assert sum(stats.matches) > 0, "the same-weights draft should get tokens accepted"


@pytest.mark.parametrize("arch", ARCHS)
def test_draft_scores_are_base_logits_on_kept_ids_and_minus_inf_elsewhere(arch, tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm(arch, vocab, seed=2, eos_token_id=tiny_tokenizer.eos_token_id)
    keep = torch.arange(5, vocab, 3)
    trimmed = TrimmedDraftModel.from_draft(draft, keep, tokenizer=tiny_tokenizer)
    x = _prompts(tiny_tokenizer, 1)[0]
    with torch.no_grad():
        base = draft(x).logits
        own = trimmed(x).logits
    assert own.shape[-1] == trimmed.kept_ids.numel() < vocab
    torch.testing.assert_close(own, base[..., trimmed.kept_ids])  # softcapping etc. applied as in the base
    full = trimmed.to_full_vocab(own)
    outside = torch.ones(vocab, dtype=torch.bool)
    outside[trimmed.kept_ids] = False
    assert torch.isneginf(full[..., outside]).all()
    # generate(): scores are V-wide, in target-id space, and the draft's greedy picks the best kept id
    out = trimmed.generate(
        x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=4,
        do_sample=False,
        output_scores=True,
        return_dict_in_generate=True,
    )
    first = out.scores[0][0]
    assert first.shape[-1] == vocab
    torch.testing.assert_close(first[trimmed.kept_ids], base[0, -1, trimmed.kept_ids])
    assert torch.isneginf(first[outside]).all()
    assert int(out.sequences[0, x.shape[-1]]) == int(trimmed.kept_ids[base[0, -1, trimmed.kept_ids].argmax()])


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3_text", "gpt2"])
def test_all_drafted_tokens_accepted_when_draft_equals_target_and_outputs_kept(arch, tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    eos = tiny_tokenizer.eos_token_id
    target = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=eos)
    draft = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=eos)
    prompt = _prompts(tiny_tokenizer, 1)[0]
    kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 30, "do_sample": False}
    reference = target.generate(**kwargs)
    trimmed = TrimmedDraftModel.from_draft(draft, torch.unique(reference[0]), tokenizer=tiny_tokenizer)
    assert trimmed.kept_ids.numel() < vocab // 4
    with record_assisted() as stats:
        assert torch.equal(target.generate(**kwargs, assistant_model=trimmed), reference)
    assert stats.rounds and stats.matches == stats.proposed, (stats.matches, stats.proposed)


def test_special_tokens_always_kept_and_head_untied(tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm("qwen2", vocab, seed=0, eos_token_id=tiny_tokenizer.eos_token_id)  # tied embeddings
    trimmed = TrimmedDraftModel.from_draft(draft, [100, 50, 70], tokenizer=tiny_tokenizer)
    kept = trimmed.kept_ids.tolist()
    assert kept == sorted(kept)
    im_end, im_start, pad = (
        tiny_tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|im_start|>", "<|endoftext|>")
    )
    assert {50, 70, 100, im_end, im_start, pad} <= set(kept)
    head, emb = trimmed.get_output_embeddings(), trimmed.get_input_embeddings()
    assert head.weight.shape == (len(kept), emb.weight.shape[1]) and emb.weight.shape[0] == vocab
    assert trimmed.config.vocab_size == vocab and trimmed.config.draft_vocab_size == len(kept)
    trimmed.tie_weights()
    assert trimmed.get_output_embeddings().weight.shape[0] == len(kept)  # never re-tied to the full embedding
    torch.testing.assert_close(head.weight, draft.get_output_embeddings().weight[trimmed.kept_ids])
    assert trimmed.get_input_embeddings().weight.data_ptr() == draft.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_save_load_round_trip(arch, tiny_tokenizer, tmp_path):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=tiny_tokenizer.eos_token_id)
    trimmed = TrimmedDraftModel.from_draft(
        draft,
        range(10, 300),
        tokenizer=tiny_tokenizer,
        trimming={"data": "demo"},
        assistant_settings={"num_assistant_tokens": 7},
    )
    trimmed.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "configuration_trimmed_draft.py",
        "modeling_trimmed_draft.py",
    } <= files
    config = TrimmedDraftConfig.from_pretrained(tmp_path)
    assert config.draft_vocab_size == trimmed.config.draft_vocab_size and config.vocab_size == vocab
    assert config.trimming == {"data": "demo"} and config.text_config.model_type == arch
    assert config.auto_map["AutoModelForCausalLM"] == "modeling_trimmed_draft.TrimmedDraftModel"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert isinstance(loaded, TrimmedDraftModel)
    assert torch.equal(loaded.kept_ids, trimmed.kept_ids)
    assert loaded.generation_config.num_assistant_tokens == 7
    assert loaded.generation_config.assistant_confidence_threshold == 0.0
    x = torch.randint(3, vocab, (1, 12))
    placed = AutoModelForCausalLM.from_pretrained(tmp_path, device_map="auto")  # accelerate placement
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, trimmed(x).logits)
        torch.testing.assert_close(placed(x).logits, trimmed(x).logits)


def test_from_draft_errors(tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm("llama", vocab, seed=0)
    with pytest.raises(ValueError, match="empty"):
        TrimmedDraftModel.from_draft(draft, [])
    with pytest.raises(ValueError, match="out of range"):
        TrimmedDraftModel.from_draft(draft, [1, vocab])
    with pytest.raises(ValueError, match="out of range"):
        TrimmedDraftModel.from_draft(draft, [-1, 4])
    with pytest.raises(ValueError, match="duplicated"):
        TrimmedDraftModel.from_draft(draft, [4, 5, 4])
    with pytest.raises(ValueError, match="integer"):
        TrimmedDraftModel.from_draft(draft, torch.tensor([1.0, 2.0]))
    other = tiny_causal_lm("llama", vocab + 8, seed=0)
    with pytest.raises(ValueError, match="vocabulary mismatch"):
        TrimmedDraftModel.from_draft(draft, [4, 5], target=other)
    small = tiny_causal_lm("llama", 300, seed=0)
    with pytest.raises(ValueError, match="tokenizer/vocabulary mismatch"):
        TrimmedDraftModel.from_draft(small, [4, 5], tokenizer=tiny_tokenizer)
    from transformers import AutoModel

    with pytest.raises(ValueError, match="AutoModelForCausalLM"):
        TrimmedDraftModel.from_draft(AutoModel.from_config(draft.config), [4, 5])
    trimmed = TrimmedDraftModel.from_draft(draft, [4, 5])
    with pytest.raises(ValueError, match="already a TrimmedDraftModel"):
        TrimmedDraftModel.from_draft(trimmed, [4, 5])
    with pytest.raises(ValueError, match="labels"):
        trimmed(torch.tensor([[4, 5]]), labels=torch.tensor([[4, 5]]))


def test_loading_rejects_non_trimmed_and_corrupt_checkpoints(tiny_tokenizer, tmp_path):
    from safetensors.torch import load_file, save_file

    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm("llama", vocab, seed=0)
    draft.save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="not a trimmed draft"):
        TrimmedDraftModel.from_pretrained(tmp_path / "plain")
    trimmed = TrimmedDraftModel.from_draft(draft, range(3, 40))
    for name, edit, message in [
        ("unsorted", lambda ids: ids.flip(0), "sorted"),
        ("out_of_range", lambda ids: torch.where(ids == ids.max(), vocab + 5, ids), "out of range"),
        ("duplicate", lambda ids: torch.cat([ids[:1], ids[:-1]]), "sorted ascending without duplicates"),
        ("missing", None, "lacks"),
        ("no_head", "head", "lacks"),
    ]:
        folder = tmp_path / name
        trimmed.save_pretrained(folder)
        weights = load_file(folder / "model.safetensors")
        if edit == "head":
            weights.pop("draft.lm_head.weight")
        elif edit is None:
            weights.pop("kept_ids")
        else:
            weights["kept_ids"] = edit(weights["kept_ids"]).contiguous()
        save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
        with pytest.raises(ValueError, match=message):
            AutoModelForCausalLM.from_pretrained(folder)
