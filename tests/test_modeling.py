"""TrimmedDraftModel: losslessness (static and context-token kept sets), draft scores, acceptance, save/load, padded
target vocabularies, placement and errors, for every supported architecture."""

from __future__ import annotations

import types

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_vocabtrim import TrimmedDraftConfig, TrimmedDraftModel
from hf_vocabtrim.measure.instrument import record_assisted
from hf_vocabtrim.tiny import TINY_CONFIGS, build_tiny_tokenizer, demo_chats, tiny_causal_lm

from .helpers import PATHS, use_path

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


def _round_prefixes(stats, prompt_length: int) -> list[int]:
    """Length of the sequence each assisted round started from (the target accepts matches + 1 tokens a round)."""
    lengths, length = [], prompt_length
    for matches in stats.matches:
        lengths.append(length)
        length += matches + 1
    return lengths


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("context", [False, True], ids=["static", "context"])
@pytest.mark.parametrize("arch", ARCHS)
def test_greedy_assisted_equals_target_and_drafts_stay_in_scored_set(arch, context, path, tiny_tokenizer):
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
    trimmed = TrimmedDraftModel.from_draft(draft, keep, tokenizer=tiny_tokenizer, target=target, context_tokens=context)
    assert trimmed.config.context_tokens == context
    use_path(trimmed, path)
    kept = set(trimmed.kept_ids.tolist())
    emitted_outside = accepted = outside_kept = 0
    for kwargs, reference in cases:
        with record_assisted() as stats:
            assisted = target.generate(**kwargs, assistant_model=trimmed)
        assert torch.equal(reference, assisted), f"{arch}: assisted greedy output differs from the target's"
        emitted_outside += sum(t not in kept for t in reference[0, kwargs["input_ids"].shape[-1] :].tolist())
        accepted += sum(stats.matches)
        for drafted, length in zip(stats.drafted, _round_prefixes(stats, kwargs["input_ids"].shape[-1])):
            allowed = kept | (set(reference[0, :length].tolist()) if context else set())
            assert set(drafted.tolist()) <= allowed, "a drafted id outside kept_ids and the sequence so far"
            outside_kept += sum(t not in kept for t in drafted.tolist())
    assert emitted_outside > 0, "the test must cover target tokens outside the kept set"
    assert accepted > 0, "the same-weights draft should get tokens accepted"
    assert (outside_kept > 0) == context  # context ids are proposed, and only with context tokens on


def test_draft_proposes_prompt_tokens_outside_kept_ids_and_never_others(tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    eos = tiny_tokenizer.eos_token_id
    target = tiny_causal_lm("qwen2", vocab, seed=0, eos_token_id=eos)  # tied embeddings: context rows are free
    draft = tiny_causal_lm("qwen2", vocab, seed=0, eos_token_id=eos)
    prompt = _prompts(tiny_tokenizer, 1)[0]
    in_prompt = set(prompt[0].tolist())
    keep = [i for i in range(0, vocab, 5) if i not in in_prompt]  # nothing of the prompt is kept
    trimmed = TrimmedDraftModel.from_draft(draft, keep, tokenizer=tiny_tokenizer, context_tokens=True)
    assert trimmed.config.context_rows == "input_embeddings" and not hasattr(trimmed, "context_head_weight")
    kept = set(trimmed.kept_ids.tolist())
    kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 30, "do_sample": False}
    reference = target.generate(**kwargs)
    with record_assisted() as stats:
        assert torch.equal(target.generate(**kwargs, assistant_model=trimmed), reference)
    drafted = [(d.tolist(), n) for d, n in zip(stats.drafted, _round_prefixes(stats, prompt.shape[-1]))]
    assert any(t in in_prompt - kept for ids, _ in drafted for t in ids), "no prompt token outside kept_ids drafted"
    for ids, length in drafted:
        assert set(ids) <= kept | set(reference[0, :length].tolist())
    # standalone generate: each new token is a kept id or an id of the sequence before it
    out = trimmed.generate(**kwargs)[0]
    for position in range(prompt.shape[-1], out.numel()):
        assert int(out[position]) in kept | set(out[:position].tolist())


@pytest.mark.parametrize("arch", ARCHS)
def test_draft_scores_are_base_logits_on_scored_ids_and_minus_inf_elsewhere(arch, tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm(arch, vocab, seed=2, eos_token_id=tiny_tokenizer.eos_token_id)
    keep = torch.arange(5, vocab, 3)
    x = _prompts(tiny_tokenizer, 1)[0]
    with torch.no_grad():
        base = draft(x).logits
    for context in (False, True):
        trimmed = TrimmedDraftModel.from_draft(draft, keep, tokenizer=tiny_tokenizer, context_tokens=context)
        with torch.no_grad():
            own = trimmed(x).logits  # a forward without cache starts a sequence: its ids are scored (context)
        scored = set(trimmed.kept_ids.tolist()) | (set(x[0].tolist()) if context else set())
        ids = trimmed.draft_ids  # kept_ids, then one context slot per position (repeats and kept ids masked)
        live = torch.isfinite(own[0, -1])
        assert own.shape[-1] == ids.numel() and set(ids[live].tolist()) == scored and len(scored) < vocab
        assert torch.isneginf(own[..., ~live]).all() and (ids.numel() > live.sum()) == context
        torch.testing.assert_close(own[..., live], base[..., ids[live]])  # softcapping etc. applied as in the base
        full = trimmed.to_full_vocab(own)
        outside = torch.ones(vocab, dtype=torch.bool)
        outside[sorted(scored)] = False
        assert torch.isneginf(full[..., outside]).all() and torch.isfinite(full[..., ~outside]).all()
        # generate(): scores are V-wide, in target-id space, and the draft's greedy picks the best scored id
        out = trimmed.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=4,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        first = out.scores[0][0]
        assert first.shape[-1] == vocab and torch.isneginf(first[outside]).all()
        torch.testing.assert_close(first[~outside], base[0, -1, ~outside])
        assert int(out.sequences[0, x.shape[-1]]) == int(base[0, -1].masked_fill(outside, float("-inf")).argmax())


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


def test_padded_target_vocabulary(tiny_tokenizer):
    """Qwen2.5-7B (V=152,064) with Qwen2.5-0.5B (V=151,936): one tokenizer, vocabularies that differ by padding."""
    vocab = len(tiny_tokenizer)
    eos = tiny_tokenizer.eos_token_id
    target = tiny_causal_lm("qwen2", vocab + 64, seed=0, eos_token_id=eos)
    draft = tiny_causal_lm("qwen2", vocab, seed=0, eos_token_id=eos)
    with pytest.raises(ValueError, match="different tokenizers"):  # transformers refuses the untrimmed pair
        target.generate(_prompts(tiny_tokenizer, 1)[0], max_new_tokens=2, assistant_model=draft)
    for context in (False, True):
        trimmed = TrimmedDraftModel.from_draft(
            draft, range(0, vocab, 2), tokenizer=tiny_tokenizer, target=target, context_tokens=context
        )
        assert trimmed.config.vocab_size == vocab + 64 and trimmed.config.base_vocab_size == vocab
        assert trimmed.get_input_embeddings().weight.shape[0] == vocab + 64
        for prompt in _prompts(tiny_tokenizer, 6):
            kwargs = {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": 20}
            reference = target.generate(**kwargs, do_sample=False)
            assert torch.equal(target.generate(**kwargs, do_sample=False, assistant_model=trimmed), reference)
        with torch.no_grad():  # a padding id in the sequence is never scored
            full = trimmed.to_full_vocab(trimmed(torch.tensor([[5, vocab + 3, 7]])).logits)
        assert torch.isneginf(full[..., vocab:]).all() and torch.isfinite(full[0, -1, 7]) == context
    big = build_tiny_tokenizer(vocab_size=vocab + 40)
    with pytest.raises(ValueError, match="tokenizer/vocabulary mismatch"):
        TrimmedDraftModel.from_draft(draft, [4, 5], tokenizer=big, target=target)


def test_untied_draft_with_context_tokens_stores_the_full_head(tiny_tokenizer, tmp_path):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=tiny_tokenizer.eos_token_id)  # untied
    static = TrimmedDraftModel.from_draft(draft, range(10, 100), tokenizer=tiny_tokenizer)
    assert not static.config.context_tokens  # default: off where it would cost memory
    trimmed = TrimmedDraftModel.from_draft(draft, range(10, 100), tokenizer=tiny_tokenizer, context_tokens=True)
    assert trimmed.config.context_rows == "stored_head"
    assert trimmed.context_head_weight.shape == draft.get_output_embeddings().weight.shape
    extra = sum(t.numel() for t in trimmed.state_dict().values()) - sum(t.numel() for t in static.state_dict().values())
    assert extra == vocab * draft.config.hidden_size  # the cost: one V x hidden head
    trimmed.save_pretrained(tmp_path)
    loaded = TrimmedDraftModel.from_pretrained(tmp_path)
    assert loaded.config.context_tokens and torch.equal(loaded.context_head_weight, trimmed.context_head_weight)
    x = _prompts(tiny_tokenizer, 1)[0]
    with torch.no_grad():
        own, base = loaded(x).logits, draft(x).logits
    live = torch.isfinite(own[0, -1])
    torch.testing.assert_close(own[..., live], base[..., loaded.draft_ids[live]])
    assert set(loaded.draft_ids[live].tolist()) == set(loaded.kept_ids.tolist()) | set(x[0].tolist())


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
        context_tokens=True,
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
        "trimmed_head.py",  # the head and id map travel beside the model code (0.3 carried specials.py instead)
    } <= files
    config = TrimmedDraftConfig.from_pretrained(tmp_path)
    assert config.draft_vocab_size == trimmed.config.draft_vocab_size and config.vocab_size == vocab
    assert config.trimming == {"data": "demo"} and config.text_config.model_type == arch
    assert config.context_tokens and config.context_rows == trimmed.config.context_rows
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


def test_generate_with_inputs_embeds_like_the_base_draft(tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=tiny_tokenizer.eos_token_id)
    trimmed = TrimmedDraftModel.from_draft(draft, range(vocab), keep_special_tokens=False)  # every id kept
    x = _prompts(tiny_tokenizer, 1)[0]
    embeds = draft.get_input_embeddings()(x)
    kwargs = {"inputs_embeds": embeds, "attention_mask": torch.ones_like(x), "max_new_tokens": 6, "do_sample": False}
    assert torch.equal(trimmed.generate(**kwargs), draft.generate(**kwargs))


def test_head_cannot_be_replaced_or_resized(tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=tiny_tokenizer.eos_token_id)
    trimmed = TrimmedDraftModel.from_draft(draft, range(0, vocab, 3), tokenizer=tiny_tokenizer)
    with pytest.raises(ValueError, match="fixed by `kept_ids`"):
        trimmed.set_output_embeddings(torch.nn.Linear(32, vocab))
    with pytest.raises(ValueError, match="resize the base draft"):
        trimmed.resize_token_embeddings(vocab + 8)
    # universal assisted decoding with sampling prunes the draft's head: a clear error instead of an IndexError
    other = build_tiny_tokenizer(vocab_size=300)
    other.add_tokens(["<|only_in_draft|>"], special_tokens=True)
    small = tiny_causal_lm("llama", len(other), seed=0, eos_token_id=other.eos_token_id)
    assistant = TrimmedDraftModel.from_draft(small, range(0, len(other), 3), tokenizer=other)
    x = tiny_tokenizer("def f(x):", return_tensors="pt")
    with pytest.raises(ValueError, match="universal assisted decoding"):
        draft.generate(
            **x,
            max_new_tokens=4,
            do_sample=True,
            assistant_model=assistant,
            tokenizer=tiny_tokenizer,
            assistant_tokenizer=other,
        )


def test_from_draft_keeps_placement_and_refuses_what_it_cannot_trim(tiny_tokenizer, tmp_path):
    vocab = len(tiny_tokenizer)
    draft = tiny_causal_lm("llama", vocab, seed=0, eos_token_id=tiny_tokenizer.eos_token_id)
    draft.save_pretrained(tmp_path / "draft")
    draft.hf_device_map = {"model": "cpu", "lm_head": "cpu"}  # as accelerate records a placement
    trimmed = TrimmedDraftModel.from_draft(draft, range(0, vocab, 3))
    assert trimmed.hf_device_map == {"draft.model": "cpu", "draft.lm_head": "cpu"}
    body, base_body = trimmed.draft.model.layers[0].mlp.up_proj.weight, draft.model.layers[0].mlp.up_proj.weight
    assert body.data_ptr() == base_body.data_ptr()  # shared, not copied
    assert trimmed.draft.model.rotary_emb.inv_freq is draft.model.rotary_emb.inv_freq  # buffers where they were
    offloaded = AutoModelForCausalLM.from_pretrained(
        tmp_path / "draft", device_map={"model": "cpu", "lm_head": "disk"}, offload_folder=str(tmp_path / "off")
    )
    with pytest.raises(ValueError, match="offloaded"):
        TrimmedDraftModel.from_draft(offloaded, [1, 2, 3])
    quantized = tiny_causal_lm("llama", vocab, seed=0)
    quantized.hf_quantizer = types.SimpleNamespace(
        quantization_config=types.SimpleNamespace(quant_method="bitsandbytes")
    )
    with pytest.raises(ValueError, match="quantized"):
        TrimmedDraftModel.from_draft(quantized, [1, 2, 3])
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    text = {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "intermediate_size": 64,
        "head_dim": 16,
        "vocab_size": 300,
    }
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "image_size": 28,
        "patch_size": 14,
    }
    composite = Gemma3ForConditionalGeneration(
        Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4)
    )
    with pytest.raises(ValueError, match="composite config"):
        TrimmedDraftModel.from_draft(composite, [1, 2, 3])


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
    small_target = tiny_causal_lm("llama", vocab - 8, seed=0)
    with pytest.raises(ValueError, match="out of range"):  # the kept ids must exist in the target's vocabulary
        TrimmedDraftModel.from_draft(draft, [4, vocab - 2], target=small_target)
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
    with pytest.raises(ValueError, match="context_rows"):
        TrimmedDraftConfig(text_config=draft.config, draft_vocab_size=2, context_tokens=True, context_rows="nowhere")


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
