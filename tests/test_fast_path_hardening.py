"""The static / captured path may only make a round faster: no sequence of calls that the eager path answers makes
it raise or change an output. Each test here failed on 0.3's ``fast_path``: an injected error in capture, replay or
prefill; a KeyboardInterrupt mid-round; inference_mode then plain calls; a deleted draft kept alive; two generations
interleaved on one draft; a per-layer-type dynamic RoPE; captures on the wrong device or stream; a bad first replay."""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import weakref

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.candidate_generator import AssistedCandidateGenerator

from hf_vocabtrim import TrimmedDraftModel
from hf_vocabtrim.measure.instrument import record_assisted
from hf_vocabtrim.model import fast_path
from hf_vocabtrim.model.fast_path import StaticDrafter
from hf_vocabtrim.tiny import demo_chats, tiny_causal_lm

from .helpers import use_path


def _prompts(tokenizer, n: int, seed: int = 3) -> list[torch.Tensor]:
    out = []
    for chat in demo_chats(n, seed=seed):
        messages = [m for m in chat["messages"] if m["role"] != "assistant"][:2]
        rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
        out.append(rendered["input_ids"] if not isinstance(rendered, torch.Tensor) else rendered)
    return out


def _pair(tokenizer, arch: str = "llama", context: bool = True, **overrides):
    vocab = len(tokenizer)
    eos = tokenizer.eos_token_id
    target = tiny_causal_lm(arch, vocab, seed=0, eos_token_id=eos, **overrides)
    draft = tiny_causal_lm(arch, vocab, seed=1, eos_token_id=eos, **overrides)
    trimmed = TrimmedDraftModel.from_draft(
        draft, range(0, vocab, 3), tokenizer=tokenizer, target=target, context_tokens=context
    )
    return target, trimmed


def _kwargs(prompt: torch.Tensor, new: int = 24) -> dict:
    return {"input_ids": prompt, "attention_mask": torch.ones_like(prompt), "max_new_tokens": new, "do_sample": False}


def _drafted(target, trimmed, prompt) -> tuple[torch.Tensor, list[list[int]]]:
    with record_assisted() as stats:
        out = target.generate(**_kwargs(prompt), assistant_model=trimmed)
    return out, [d.tolist() for d in stats.drafted]


@pytest.fixture
def pair(tiny_tokenizer):
    target, trimmed = _pair(tiny_tokenizer)
    prompts = _prompts(tiny_tokenizer, 3)
    references = [target.generate(**_kwargs(p)) for p in prompts]
    return target, trimmed, prompts, references


def _twin(trimmed) -> StaticDrafter:
    use_path(trimmed, "captured-twin")
    return fast_path.drafter_of(trimmed)


def _fail(message: str):
    def raiser(*args, **kwargs):
        raise RuntimeError(message)

    return raiser


@pytest.mark.parametrize("where", ["capture", "replay", "prefill"])
def test_an_error_inside_the_path_falls_back_to_eager_once_and_for_all(where, pair, monkeypatch, caplog):
    """Out of memory in the graph pool, 'operation not permitted when stream is capturing', a failed replay or
    prefill: the call returns the target's output, one warning says why, later calls keep working (eager)."""
    target, trimmed, prompts, references = pair
    drafter = _twin(trimmed)
    if where == "capture":
        monkeypatch.setattr(StaticDrafter, "_step", _fail("operation not permitted when stream is capturing"))
    elif where == "prefill":
        real_forward = StaticDrafter._forward

        def prefill_oom(self, ids):
            if ids.shape[1] > 2:
                real_forward(self, ids[:, : ids.shape[1] // 2])  # half the prompt written, then out of memory
                raise torch.OutOfMemoryError("CUDA out of memory (injected)")
            return real_forward(self, ids)

        monkeypatch.setattr(StaticDrafter, "_forward", prefill_oom)
    else:
        real_step = StaticDrafter._step
        calls = {"n": 0}

        def failing_replays(self, length):
            step = real_step(self, length)
            replay = step.replay

            def replay_then_fail():
                calls["n"] += 1
                if calls["n"] >= 3:  # mid-round, after two proposals were fed
                    raise RuntimeError("CUDA error: an illegal memory access was encountered (injected)")
                return replay()

            step.replay = replay_then_fail
            return step

        monkeypatch.setattr(StaticDrafter, "_step", failing_replays)
    with caplog.at_level(logging.WARNING):
        outputs = [target.generate(**_kwargs(p), assistant_model=trimmed) for p in prompts]
    assert all(torch.equal(out, ref) for out, ref in zip(outputs, references))
    warnings = [r for r in caplog.records if "turned off" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert "injected" in warnings[0].getMessage() or "capturing" in warnings[0].getMessage()
    assert fast_path.disabled_reason(trimmed) and fast_path.mode(trimmed) == "eager"
    assert fast_path.drafter_of(trimmed) is None and drafter.cache is None  # its cache and graphs were freed


class _Interrupt(LogitsProcessor):
    """Raises KeyboardInterrupt at its ``at``-th call (the first calls are the draft's proposals of round one)."""

    def __init__(self, at: int) -> None:
        self.calls, self.at = 0, at

    def __call__(self, input_ids, scores):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return scores


@pytest.mark.parametrize("capture", [None, "twin"], ids=["static", "captured-twin"])
def test_keyboard_interrupt_mid_round_leaves_a_state_the_next_call_can_trust(capture, tiny_tokenizer):
    """An interrupt after two proposals were fed (the cache two positions ahead of the ids): the next call drafts
    exactly what a fresh drafter drafts, on a new prompt that shares the chat template's prefix and on the same."""
    target, trimmed = _pair(tiny_tokenizer, "qwen2", context=True)
    prompts = _prompts(tiny_tokenizer, 2)
    trimmed.config.fast_path = "static"
    fast_path.attach(trimmed, StaticDrafter(trimmed, capture=capture))
    with pytest.raises(KeyboardInterrupt):
        target.generate(**_kwargs(prompts[0]), assistant_model=trimmed, logits_processor=[_Interrupt(3)])
    after = [_drafted(target, trimmed, p) for p in (prompts[1], prompts[0])]
    fresh = []
    for prompt in (prompts[1], prompts[0]):
        fast_path.attach(trimmed, StaticDrafter(trimmed, capture=capture))
        fresh.append(_drafted(target, trimmed, prompt))
    for (out, drafted), (fresh_out, fresh_drafted) in zip(after, fresh):
        assert torch.equal(out, fresh_out) and drafted == fresh_drafted


def test_inference_mode_then_plain_generate(tiny_tokenizer):
    """Serving code often runs a first call under torch.inference_mode(); the drafter's persistent cache must not
    turn into inference tensors that a later plain generate() (no_grad) cannot update."""
    target, trimmed = _pair(tiny_tokenizer, "llama", context=True)
    use_path(trimmed, "static")
    prompts = _prompts(tiny_tokenizer, 3)
    references = [target.generate(**_kwargs(p)) for p in prompts]
    with torch.inference_mode():
        assert torch.equal(target.generate(**_kwargs(prompts[0]), assistant_model=trimmed), references[0])
    assert torch.equal(target.generate(**_kwargs(prompts[1]), assistant_model=trimmed), references[1])
    with torch.inference_mode():
        assert torch.equal(target.generate(**_kwargs(prompts[2]), assistant_model=trimmed), references[2])
    trimmed.config.fast_path = "eager"  # the eager path after the static one (shared per-model state)
    assert torch.equal(target.generate(**_kwargs(prompts[1]), assistant_model=trimmed), references[1])
    assert fast_path.disabled_reason(trimmed) is None


def test_deleting_the_draft_frees_it_and_its_drafter(tiny_tokenizer):
    target, trimmed = _pair(tiny_tokenizer, "llama", context=False)
    use_path(trimmed, "captured-twin")
    prompt = _prompts(tiny_tokenizer, 1)[0]
    target.generate(**_kwargs(prompt), assistant_model=trimmed)
    drafter = fast_path.drafter_of(trimmed)
    assert drafter is not None and drafter.ids
    model_ref, drafter_ref = weakref.ref(trimmed), weakref.ref(drafter)
    del trimmed, drafter
    gc.collect()
    assert model_ref() is None, "the trimmed draft is still referenced"
    assert drafter_ref() is None, "its drafter (static cache, graphs) is still referenced"


class _Turns:
    """Makes two threads' assistant rounds alternate: A, B, A, B... (a thread that finished leaves the rotation)."""

    def __init__(self, names: list[str]) -> None:
        self.order, self.turn, self.cond = list(names), 0, threading.Condition()

    def wait(self, name: str) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.order[self.turn % len(self.order)] == name)

    def done_round(self, name: str) -> None:
        with self.cond:
            self.turn += 1
            self.cond.notify_all()

    def leave(self, name: str) -> None:
        with self.cond:
            position = self.order.index(name)
            self.order.remove(name)
            if self.order and position < self.turn % (len(self.order) + 1):
                self.turn -= 1
            self.cond.notify_all()


@pytest.mark.parametrize("alternate", [True, False], ids=["rounds-alternate", "free-running"])
def test_two_threads_generating_with_one_draft(alternate, tiny_tokenizer, monkeypatch):
    """Each thread gets the target's output and drafts exactly what it drafts alone: a generation never continues
    from another's history (0.3 did, when rounds of two generations interleaved)."""
    target, trimmed = _pair(tiny_tokenizer, "qwen2", context=True)
    use_path(trimmed, "captured-twin")
    prompts = dict(zip("AB", _prompts(tiny_tokenizer, 2, seed=5)))
    alone = {}
    for name, prompt in prompts.items():
        fast_path.attach(trimmed, StaticDrafter(trimmed, capture="twin"))
        alone[name] = _drafted(target, trimmed, prompt)
    fast_path.attach(trimmed, StaticDrafter(trimmed, capture="twin"))
    turns = _Turns(list(prompts))
    names = threading.local()
    drafted: dict[str, list[list[int]]] = {name: [] for name in prompts}
    get_candidates = AssistedCandidateGenerator.get_candidates

    def recorded(self, input_ids, **kwargs):
        if alternate:
            turns.wait(names.name)
        ids, logits = get_candidates(self, input_ids, **kwargs)
        drafted[names.name].append(ids[0, input_ids.shape[-1] :].tolist())
        if alternate:
            turns.done_round(names.name)
        return ids, logits

    monkeypatch.setattr(AssistedCandidateGenerator, "get_candidates", recorded)
    outputs, errors = {}, []

    def run(name: str) -> None:
        names.name = name
        try:
            outputs[name] = target.generate(**_kwargs(prompts[name]), assistant_model=trimmed)
        except BaseException as err:  # reported below
            errors.append(err)
        finally:
            turns.leave(name)

    threads = [threading.Thread(target=run, args=(name,)) for name in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for name in prompts:
        assert torch.equal(outputs[name], alone[name][0]), name
        assert drafted[name] == alone[name][1], name


def test_per_layer_type_dynamic_rope_takes_the_eager_path(tiny_tokenizer, caplog):
    """Gemma 3 keeps one RoPE setting per layer type; a dynamic one there reads the longest position on the host."""
    rope = {
        "full_attention": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 10000.0},
        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
    }
    target, trimmed = _pair(tiny_tokenizer, "gemma3_text", context=False, rope_parameters=rope)
    trimmed.config.fast_path = "static"
    assert "dynamic RoPE" in (fast_path.unsupported_model(trimmed) or "")
    assert fast_path.mode(trimmed) == "eager"
    prompt = _prompts(tiny_tokenizer, 1)[0]
    with caplog.at_level(logging.WARNING, logger="hf_vocabtrim.model.fast_path"):
        out = target.generate(**_kwargs(prompt), assistant_model=trimmed)
    assert torch.equal(out, target.generate(**_kwargs(prompt)))
    assert "dynamic RoPE" in caplog.text and fast_path.drafter_of(trimmed) is None


def test_a_first_replay_that_differs_turns_capture_off(pair, monkeypatch, caplog):
    """The first replay of every captured step is compared with the same step run uncaptured; a difference beyond
    the dtype's tolerance turns capture off (the static path goes on, lossless)."""
    target, trimmed, prompts, references = pair
    drafter = _twin(trimmed)
    real_step = StaticDrafter._step

    def corrupt(self, length):
        step = real_step(self, length)
        replay = step.replay
        step.replay = lambda: (replay(), step.scores.mul_(1.5))  # a graph that reads a stale buffer, say
        return step

    monkeypatch.setattr(StaticDrafter, "_step", corrupt)
    with caplog.at_level(logging.WARNING):
        outputs = [_drafted(target, trimmed, p) for p in prompts]
    assert all(torch.equal(out, ref) for (out, _), ref in zip(outputs, references))
    assert "capture is off" in caplog.text
    assert drafter.capture is None and drafter.requested == "twin" and fast_path.drafter_of(trimmed) is drafter
    monkeypatch.undo()
    fast_path.attach(trimmed, StaticDrafter(trimmed))  # the same proposals as the uncaptured static path
    assert [_drafted(target, trimmed, p)[1] for p in prompts] == [drafted for _, drafted in outputs]


def test_a_user_processor_error_is_raised_as_without_this_library(pair):
    """An error of the user's own logits processor reaches the user (via the eager path, as without this library)
    and leaves the drafter on; one that only the static path hits turns the path off and the call succeeds."""
    target, trimmed, prompts, references = pair
    _twin(trimmed)

    class Broken(LogitsProcessor):
        def __call__(self, input_ids, scores):
            raise ValueError("the user's processor is broken")

    with pytest.raises(ValueError, match="user's processor is broken"):
        broken = LogitsProcessorList([Broken()])
        target.generate(**_kwargs(prompts[0]), assistant_model=trimmed, logits_processor=broken)
    assert fast_path.disabled_reason(trimmed) is None and fast_path.mode(trimmed) == "static"
    assert torch.equal(target.generate(**_kwargs(prompts[1]), assistant_model=trimmed), references[1])

    real_prepare = StaticDrafter._prepare

    def static_only_failure(self, *args):
        processing = real_prepare(self, *args)
        processing.processors = LogitsProcessorList([Broken()])
        return processing

    StaticDrafter._prepare = static_only_failure  # type: ignore[method-assign]
    try:
        assert torch.equal(target.generate(**_kwargs(prompts[2]), assistant_model=trimmed), references[2])
    finally:
        StaticDrafter._prepare = real_prepare  # type: ignore[method-assign]
    assert "static path only" in fast_path.disabled_reason(trimmed)


class _FakeCuda:
    """Records what the drafter asks of torch.cuda on a machine without one: the device made current around each
    warm-up, capture and replay, and the stream and error mode of each capture."""

    def __init__(self) -> None:
        self.current: list[str] = []
        self.events: list[tuple[str, tuple[str, ...]]] = []
        self.captures: list[dict] = []

    def install(self, monkeypatch) -> None:
        fake = self

        class Stream:
            def __init__(self, device=None):
                self.device = device

            def wait_stream(self, other):
                pass

        @contextlib.contextmanager
        def device(dev):
            fake.current.append(str(dev))
            try:
                yield
            finally:
                fake.current.pop()

        class Graph:
            def replay(self):
                fake.events.append(("replay", tuple(fake.current)))

            def pool(self):
                return "pool"

        @contextlib.contextmanager
        def graph(g, pool=None, stream=None, capture_error_mode="global"):
            fake.captures.append({"stream": stream, "mode": capture_error_mode, "device": tuple(fake.current)})
            yield

        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream(device))
        monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "device", device)
        monkeypatch.setattr(torch.cuda, "CUDAGraph", Graph)
        monkeypatch.setattr(torch.cuda, "graph", graph)


def test_capture_runs_on_the_drafter_device_and_its_own_stream(tiny_tokenizer, monkeypatch):
    """A draft on cuda:1 while cuda:0 is current: warm-up, capture and replay must make the draft's device current,
    and every capture must use the drafter's own stream (one per drafter, shared by the captures of its pool) with
    a thread-local error mode (another thread allocating during a capture must not make it fail)."""
    _, trimmed = _pair(tiny_tokenizer, "llama", context=False)
    fake = _FakeCuda()
    fake.install(monkeypatch)
    # the first-use check is tested above; a fake graph computes nothing, so it is passed through here
    monkeypatch.setattr(StaticDrafter, "_check", lambda self, step, ids, start: step.scores)
    drafter = StaticDrafter(trimmed, capture="cuda")
    drafter.device = torch.device("cpu")  # the fake device: what torch.cuda.device() is entered with
    drafter.reserve(64)
    drafter._feed(_prompts(tiny_tokenizer, 1)[0])  # the prefill (uncaptured)
    drafter._feed(torch.tensor([[7]]))  # builds the one-id step: warm-up, capture, first replay
    drafter._feed(torch.tensor([[8, 9]]))  # the two-id step shares the pool
    assert len(fake.captures) == 2
    for capture in fake.captures:
        assert capture["stream"] is drafter.stream and capture["mode"] == "thread_local"
        assert capture["device"] == ("cpu",)
    assert fake.events and all(current == ("cpu",) for _, current in fake.events)
