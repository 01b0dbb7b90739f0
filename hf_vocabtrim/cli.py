# Copyright 2026 The hf-vocabtrim Authors. Licensed under the Apache License, Version 2.0.
"""``vocabtrim`` command line: count -> optimize -> trim (and profile, acceptance, export, import, demo).

Each command is a thin call into the package; this module only parses arguments and turns errors into one line and a
non-zero exit. It is long because one argparse parser holds every command and its flags.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .configuration_trimmed_draft import FAST_PATHS
from .loaders import DTYPES, load_causal_lm, load_draft_config, load_generation_config, load_tokenizer


def _load_rows(args: argparse.Namespace, data: str) -> Any:
    from .data import ChatColumns, load_chats

    columns = ChatColumns(
        messages=args.messages_column,
        conversations=args.conversations_column,
        prompt=args.prompt_column,
        response=args.response_column,
        system=args.system_column,
        text=args.text_column,
    )
    return load_chats(
        data,
        split=args.split,
        streaming=args.streaming,
        fmt=args.format,
        columns=columns,
        max_examples=args.max_examples,
        data_config=args.data_config,
    )


def _count(args: argparse.Namespace, data: str, tokenizer: Any) -> Any:
    from .counting import count_tokens

    rows = _load_rows(args, data)
    return count_tokens(tokenizer, rows, batch_size=args.batch_size, num_proc=args.num_proc, source=Path(data).name)


def _plan_for(args: argparse.Namespace, draft_config: Any, generation_config: Any) -> Any:
    """The keep plan of ``--plan`` / ``--summary`` (written by optimize), or one made from ``--counts``."""
    from .counts import TokenCounts
    from .keep_plan import KeepPlan

    source = getattr(args, "plan", None) or (Path(args.summary).parent if getattr(args, "summary", None) else None)
    if source is not None:
        return KeepPlan.load(source)
    if not args.counts:
        raise ValueError("pass --plan/--summary (from `vocabtrim optimize`) or --counts.")
    return KeepPlan.from_counts(TokenCounts.load(args.counts), draft_config, generation_config)


def cmd_count(args: argparse.Namespace) -> int:
    tokenizer = load_tokenizer(args.tokenizer, args.gguf_file)
    if args.generate_with:  # the target's own replies to the data's prompts
        from .data import public_name
        from .target_outputs import count_replies, generate_replies, merge_counts

        placement = {"device_map": args.device} if args.device else {}
        target = load_causal_lm(args.generate_with, None, args.dtype, **placement)
        replies = generate_replies(
            target,
            tokenizer,
            list(_load_rows(args, args.data)),
            max_new_tokens=args.max_new_tokens,
            batch_size=args.generation_batch_size,
            generations=args.generations or Path(args.out).with_suffix(".generations.jsonl"),
        )
        name = Path(args.data).name
        counts = count_replies(
            replies, tokenizer, name, target=public_name(args.generate_with), max_new_tokens=args.max_new_tokens
        )
        if args.keep_dataset_responses:
            counts = merge_counts(_count(args, args.data, tokenizer), counts)
    else:
        counts = _count(args, args.data, tokenizer)
    counts.save(args.out)
    keys = ("conversations_without_assistant_text", "skipped_conversations")
    print(
        json.dumps(
            {
                "out": str(args.out),
                "conversations": counts.num_conversations,
                "tokens": counts.num_tokens,
                "distinct_ids": int((counts.counts > 0).sum()),
                "vocab_size": counts.vocab_size,
                **{key: counts.extra[key] for key in keys if key in counts.extra},
            }
        )
    )
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from .acceptance import AcceptanceCurve
    from .counts import TokenCounts
    from .planning import Speedup, Utility, plan
    from .report import write_report
    from .speedup import CostModel

    counts = TokenCounts.load(args.counts)
    heldout = TokenCounts.load(args.eval_counts) if args.eval_counts else None
    if args.eval_data:
        if not args.tokenizer:
            raise ValueError("--eval-data needs --tokenizer (the tokenizer the counts were made with).")
        tokenizer = load_tokenizer(args.tokenizer)
        counts.check_tokenizer(tokenizer)
        heldout = _count(args, args.eval_data, tokenizer)
    draft_config = load_draft_config(args.draft_config)
    objective: Utility | Speedup = Utility(args.alpha)
    if args.objective == "speedup":
        if not args.acceptance or not args.costs:
            raise ValueError(
                "--objective speedup needs --acceptance (from `vocabtrim acceptance`) and --costs (from "
                "`vocabtrim profile --assisted`)."
            )
        acceptance = json.loads(Path(args.acceptance).read_text())
        if acceptance.get("vocab_hash") not in (None, counts.vocab_hash):
            raise ValueError("the acceptance curve was made with another tokenizer than these counts.")
        costs = CostModel.from_dict(json.loads(Path(args.costs).read_text()))
        objective = Speedup(AcceptanceCurve.from_dict(acceptance), costs, context_tokens=args.context_tokens)
    generation_config = load_generation_config(args.draft_config)
    guard = _guard(args, counts, draft_config, generation_config)
    result = plan(
        counts,
        draft_config,
        objective=objective,
        generation_config=generation_config,
        guard=guard,
        coverage_basis=args.objective_coverage,
        heldout=heldout,
        min_coverage=args.min_coverage,
        k_min=args.k_min,
        k_max=args.k_max,
        n_trials=args.trials,
        seed=args.seed,
        context_length=args.context_length,
        latency_fit=json.loads(Path(args.latency_fit).read_text()) if args.latency_fit else None,
        alpha=args.alpha,
    )
    summary = write_report(result, args.out, draft_config, alpha=args.alpha)
    keys = (
        "k",
        "decided_by",
        "guard",
        "coverage",
        "coverage_basis",
        "heldout_coverage",
        "latency_reduction",
        "utility",
        "exact_k",
        "tpe_gap",
        "predicted_speedup",
        "predicted_speedup_untrimmed",
        "advice",
        "objectives",
    )
    print(json.dumps({key: summary[key] for key in keys if key in summary}, indent=1))
    if summary["decided_by"] == "guard":
        g = summary["guard"]
        print(
            f"the guard ({g['source']}), not the objective, set k={summary['k']:,}: without it k would be "
            f"{g['k_without_guard']:,}, where its {g['what']} is {g['value_without_guard']:.3f} < {g['floor']:.3f}"
        )
    print(f"wrote {args.out}/summary.json, trials.json, pareto.json, trim_report.png, keep_plan.safetensors")
    return 0


def _guard(args: argparse.Namespace, counts: Any, draft_config: Any, generation_config: Any) -> Any:
    """The guard of ``optimize``: tau on the guard chats (an acceptance file, or measured here with --target and
    --draft), or their coverage from counts alone; None without --guard-data / --guard-acceptance."""
    from .acceptance import AcceptanceCurve, measure_acceptance
    from .data import public_name
    from .guard import Guard
    from .keep_plan import KeepPlan

    if not (args.guard_data or args.guard_acceptance):
        if args.target or args.draft:
            raise ValueError("--target/--draft measure tau on --guard-data: pass --guard-data too.")
        return None
    source = public_name(args.guard_data or args.guard_acceptance)
    common = {"source": source, "max_loss": args.max_guard_loss, "context_tokens": bool(args.context_tokens)}
    if args.guard_acceptance:
        data = json.loads(Path(args.guard_acceptance).read_text())
        if data.get("vocab_hash") not in (None, counts.vocab_hash):
            raise ValueError("the guard's acceptance curve was made with another tokenizer than these counts.")
        return Guard(acceptance=AcceptanceCurve.from_dict(data), **common)
    if not args.tokenizer and not args.draft:
        raise ValueError("--guard-data needs --tokenizer (or --draft) to read the chats with the counts' tokenizer.")
    tokenizer = load_tokenizer(args.tokenizer or args.draft)
    counts.check_tokenizer(tokenizer)
    if bool(args.target) != bool(args.draft):
        raise ValueError("measuring tau on --guard-data needs both --target and --draft.")
    if not args.target:  # no acceptance pass: the coverage guard, from counts alone
        return Guard(counts=_count(args, args.guard_data, tokenizer), **common)
    keep = KeepPlan.from_counts(counts, draft_config, generation_config)
    target = load_causal_lm(args.target, None, args.dtype)
    draft = load_causal_lm(args.draft, None, args.dtype)
    rows = _load_rows(args, args.guard_data)
    measured = measure_acceptance(target, draft, tokenizer, rows, keep, context=bool(args.context_tokens))
    return Guard(acceptance=AcceptanceCurve.from_dict(measured), **common)


def cmd_trim(args: argparse.Namespace) -> int:
    from .counts import TokenCounts
    from .hub import public_name
    from .keep_plan import check_k
    from .trimming import trim_draft

    tokenizer = load_tokenizer(args.tokenizer or args.draft, args.gguf_file)
    target = load_draft_config(args.target) if args.target else None
    draft_source = args.draft if not args.gguf_file else None  # a GGUF file holds its config with its weights
    if draft_source is not None:  # the plan and --k are checked before any weights load
        keep = _plan_for(args, load_draft_config(draft_source), load_generation_config(draft_source))
        check_k(keep.k if args.k is None else args.k, keep.num_forced, keep.vocab_size)
    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype)
    if draft_source is None:
        keep = _plan_for(args, draft.config.get_text_config(decoder=True), draft.generation_config)
    counts = TokenCounts.load(args.counts) if args.counts else None
    model = trim_draft(
        draft,
        keep,
        args.k,
        tokenizer=tokenizer,
        target=target,
        counts=counts,
        context_tokens=args.context_tokens,
        assistant_settings={"num_assistant_tokens": args.num_assistant_tokens},
        trimming={"base_model": public_name(args.draft), "gguf_file": args.gguf_file},
        fast_path=args.fast_path,
    )
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    info = model.config.trimming
    print(
        json.dumps(
            {
                "out": str(args.out),
                "k": info["k"],
                "vocab_size": model.full_vocab_size,
                "coverage": info.get("coverage"),
                "context_tokens": model.config.context_tokens,
                "fast_path": model.config.fast_path,
            }
        )
    )
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    import torch

    from .assisted_costs import profile_assisted
    from .profiling import profile_draft

    if args.threads:
        torch.set_num_threads(args.threads)
    placement = {"device_map": args.device} if args.device else {}
    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype, **placement)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    if args.assisted:
        if not args.target:
            raise ValueError("--assisted needs --target.")
        target = load_causal_lm(args.target, None, args.dtype, **placement)
        costs = profile_assisted(
            target,
            draft,
            gamma=args.gamma,
            ks=args.ks,
            prompt_tokens=args.contexts,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
        )
        Path(args.out).write_text(json.dumps(costs.as_dict(), indent=2))
        print(json.dumps(costs.as_dict(), indent=1))
        return 0
    result = profile_draft(draft, args.ks, prompt=args.prompt, steps=args.steps, rounds=args.rounds)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for point in result["points"]:
        print(f"k={point['k']:>8}: {point['ms']:8.2f} ms/token")
    print(
        f"fit: time(k) = {result['a_ms']:.3f} ms + {result['b_ms_per_row'] * 1000:.4f} ms per 1000 rows "
        f"(max error {result['max_rel_error']:.1%}); wrote {args.out}"
    )
    return 0


def cmd_acceptance(args: argparse.Namespace) -> int:
    from .acceptance import measure_acceptance

    tokenizer = load_tokenizer(args.tokenizer or args.draft)
    target = load_causal_lm(args.target, None, args.dtype)
    draft = load_causal_lm(args.draft, None, args.dtype)
    keep = _plan_for(args, draft.config.get_text_config(decoder=True), draft.generation_config)
    from .counts import vocab_hash

    if vocab_hash(tokenizer) != keep.vocab_hash:
        raise ValueError("the counts/plan were made with another tokenizer than the draft's; count again.")
    rows = _load_rows(args, args.data)
    result = measure_acceptance(
        target,
        draft,
        tokenizer,
        rows,
        keep,
        ks=args.ks,
        gamma=args.gamma,
        max_length=args.max_length,
        context=args.context_tokens,
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for i, (k, tau) in enumerate(zip(result["ks"], result["tau"])):
        context = result.get("tau_context")
        print(f"k={k:>8}: tau {tau:.3f}" + (f", with context ids {context[i]:.3f}" if context else ""))
    print(f"wrote {args.out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import numpy as np
    from safetensors import safe_open

    from .export import export_token_map

    config = json.loads((Path(args.model) / "config.json").read_text())
    if config.get("model_type") != "trimmed_draft":
        raise ValueError(f"{args.model} is not a trimmed draft; create one with `vocabtrim trim`.")
    with safe_open(str(Path(args.model) / "model.safetensors"), framework="np") as handle:
        kept = np.asarray(handle.get_tensor("kept_ids"))
    if args.format == "frspec" and args.plan:  # FR-Spec wants the ids most frequent first: the plan's order
        from .keep_plan import KeepPlan

        order = KeepPlan.load(args.plan).order
        kept = order[np.isin(order, kept)]
    vocab = int(config["text_config"]["vocab_size"])
    path = export_token_map(kept, args.out, args.format, vocab_size=vocab)
    print(json.dumps({"out": str(path), "format": args.format, "k": int(len(kept)), "vocab_size": vocab}))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from .export import import_token_map
    from .modeling_trimmed_draft import TrimmedDraftModel

    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype)
    vocab = int(draft.config.get_text_config().vocab_size)
    kept = import_token_map(args.token_map, args.format, vocab_size=vocab)
    model = TrimmedDraftModel.from_draft(
        draft,
        kept,
        keep_special_tokens=not args.exact,
        context_tokens=args.context_tokens,
        trimming={"imported_from": Path(args.token_map).name, "format": args.format},
    )
    model.save_pretrained(args.out)
    try:
        load_tokenizer(args.draft, args.gguf_file).save_pretrained(args.out)
    except Exception as err:  # no (loadable) tokenizer there: the model folder is complete without it; say so
        print(f"vocabtrim import: note: no tokenizer saved with the model ({err})", file=sys.stderr)
    print(json.dumps({"out": str(args.out), "k": model.config.draft_vocab_size, "vocab_size": vocab}))
    return 0


def _head_specials(tokenizer: Any | None) -> list[int] | None:
    """End-of-turn / eos ids of the target's tokenizer (None without one: the head's config eos)."""
    if tokenizer is None:
        return None
    from .specials import special_token_ids

    return sorted(special_token_ids(None, None, tokenizer))


def cmd_eagle3(args: argparse.Namespace) -> int:
    import types

    import numpy as np

    from .counts import TokenCounts
    from .coverage import coverage_of
    from .eagle3 import check_head, head_card, load_head, plan_head, save_head, trim_head
    from .keep_plan import KeepPlan
    from .report import write_report

    head = load_head(args.draft)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    specials = _head_specials(tokenizer)
    problems = check_head(head, specials)
    if problems:
        raise ValueError(f"{args.draft} does not lint clean (`vocabtrim check`): " + " | ".join(problems))
    counts = TokenCounts.load(args.counts)
    if tokenizer is not None:
        counts.check_tokenizer(tokenizer)
    rows = head.draft_vocab_size
    report = Path(args.report) if args.report else Path(f"{args.out}.report")
    if args.plan:  # a plan from an earlier `vocabtrim eagle3` (its report folder)
        keep = KeepPlan.load(args.plan)
        keep.check_counts(counts)
        kept = keep.kept_ids(args.k)
        summary: dict[str, Any] = {"k": len(kept), "coverage": keep.coverage(counts, len(kept)), "objective": "plan"}
        summary["counts"] = counts.metadata
        missing: list[int] = []
    else:
        planned, missing = plan_head(
            head,
            counts,
            k=args.k,
            min_coverage=args.min_coverage,
            alpha=args.alpha,
            n_trials=args.trials,
            k_min=args.k_min,
            seed=args.seed,
            special_ids=specials,
        )
        config = types.SimpleNamespace(model_type=f"eagle3 head ({head.layout})")
        summary = write_report(planned, report, config, alpha=args.alpha)
        kept = planned.keep_plan.kept_ids()
    summary["head_coverage"] = coverage_of(head.head_ids, counts.counts)
    trimmed = trim_head(head, np.asarray(kept))
    save_head(trimmed, args.out, source=args.draft, card=head_card(trimmed, rows, summary, missing))
    problems = check_head(load_head(args.out), specials)
    for problem in problems:
        print(f"{args.out}: {problem}", file=sys.stderr)
    keys = ("k", "coverage", "head_coverage", "latency_reduction", "lm_head_share_full", "exact_k", "tpe_gap")
    print(json.dumps({"out": str(args.out), "rows_before": rows, **{k: summary[k] for k in keys if k in summary}}))
    if missing:
        print(f"note: the head has no row for special ids {missing}; they stay unproposable", file=sys.stderr)
    return 1 if problems else 0


def cmd_check(args: argparse.Namespace) -> int:
    from .eagle3 import check_head, load_head

    head = load_head(args.model)
    problems = check_head(head, _head_specials(load_tokenizer(args.tokenizer) if args.tokenizer else None))
    for problem in problems:
        print(f"{args.model}: {problem}")
    if not problems:
        print(f"{args.model}: ok ({head.layout} layout, {head.draft_vocab_size:,} head rows of V={head.vocab_size:,})")
    return 1 if problems else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out)
    return 0


def _add_data_args(parser: argparse.ArgumentParser, flag: str = "--data", required: bool = True) -> None:
    parser.add_argument(flag, required=required, help="chat data: .json/.jsonl/.parquet/.csv/.txt, folder or Hub id")
    parser.add_argument("--split", default="train", help="dataset split (Hub / folder datasets)")
    parser.add_argument("--data-config", default=None, help="dataset configuration name (Hub datasets)")
    parser.add_argument("--streaming", action="store_true", help="stream the dataset instead of downloading it")
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", "messages", "sharegpt", "pairs", "text"],
        help="layout of the rows (auto: from the column names)",
    )
    for name, default, what in (
        ("messages", "messages", "OpenAI-style messages (role/content)"),
        ("conversations", "conversations", "ShareGPT conversations (from/value)"),
        ("prompt", "prompt", "the prompt of prompt/response rows"),
        ("response", "response", "the response of prompt/response rows"),
        ("system", None, "an optional system prompt of prompt/response rows"),
        ("text", "text", "plain text (--format text)"),
    ):
        parser.add_argument(f"--{name}-column", default=default, help=f"column with {what}")
    parser.add_argument("--max-examples", type=POSITIVE, default=None, help="use only the first N rows")


def _add_batch_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=POSITIVE, default=256, help="chats rendered and tokenised per batch")
    parser.add_argument("--num-proc", type=POSITIVE, default=1, help="worker processes for counting")


def _add_plan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", default=None, help="keep plan (folder or keep_plan.safetensors) from optimize")
    parser.add_argument("--summary", default=None, help="summary.json from optimize (its keep plan beside it)")
    parser.add_argument("--counts", default=None, help="counts file (ranks the ids when no plan is given)")


def _context_flag(parser: argparse.ArgumentParser, default: bool | None, help: str) -> None:
    parser.add_argument("--context-tokens", action=argparse.BooleanOptionalAction, default=default, help=help)


DESCRIPTION = """Trim a draft model's vocabulary for faster speculative decoding with Hugging Face generate().

The usual flow: `count` the assistant tokens of chat data like your traffic, `optimize` the kept vocabulary size k
(coverage floor, optional guard data, Optuna TPE), `trim` the draft; then use it as
`target.generate(..., assistant_model=draft)`. `profile` and `acceptance` measure what the speedup objective needs,
`eagle3` trims EAGLE-3 heads for vLLM / SGLang, `check` lints such checkpoints, `export` / `import` convert kept sets,
and `demo` runs everything offline on tiny models."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows each flag's default and keeps the description's line breaks."""


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line naming the problem (the usage is in --help), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _ranged(kind: type, low: float | None = None, high: float | None = None, open_high: bool = False) -> Any:
    """An argparse type: ``kind`` within [low, high] (``high`` excluded with ``open_high``), else a parser error
    that gives the allowed range."""
    upper = "" if high is None else f", {high}{')' if open_high else ']'}"
    allowed = f"[{low}{upper}" if upper else f">= {low}"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        too_high = high is not None and (value >= high if open_high else value > high)
        if (low is not None and value < low) or too_high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: allowed {allowed}")
        return value

    parse.__name__ = kind.__name__
    return parse


FRACTION = _ranged(float, 0.0, 1.0)
LOSS = _ranged(float, 0.0, 1.0, open_high=True)
POSITIVE = _ranged(int, 1)
NON_NEGATIVE = _ranged(int, 0)


def _command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its purpose and every flag's default."""
    return sub.add_parser(name, help=help, description=help, formatter_class=_Formatter)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vocabtrim", description=DESCRIPTION, formatter_class=_Formatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _command(sub, "count", help="count assistant tokens of chat data with a tokenizer's chat template")
    _add_data_args(p)
    p.add_argument("--tokenizer", required=True, help="tokenizer folder or Hub id")
    p.add_argument("--gguf-file", default=None, help="read the tokenizer from this GGUF file in --tokenizer")
    p.add_argument("--out", required=True, help="counts file (.json or .safetensors)")
    _add_batch_args(p)
    p.add_argument(
        "--generate-with",
        default=None,
        help="target model: count its own greedy replies to the data's prompts (the messages before the first "
        "assistant turn) instead of the data's responses",
    )
    p.add_argument("--max-new-tokens", type=POSITIVE, default=256, help="longest target reply (--generate-with)")
    p.add_argument("--generation-batch-size", type=POSITIVE, default=8, help="prompts per batch (--generate-with)")
    p.add_argument(
        "--generations", default=None, help="JSONL of the replies, resumable (default: OUT with .generations.jsonl)"
    )
    p.add_argument(
        "--keep-dataset-responses", action="store_true", help="count the data's responses too (--generate-with)"
    )
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="dtype of --generate-with")
    p.add_argument("--device", default=None, help="device_map of --generate-with, e.g. cuda or auto")
    p.set_defaults(func=cmd_count)

    p = _command(sub, "optimize", help="choose k: max U(k) (or predicted speedup) s.t. C(k) >= c_min with TPE")
    p.add_argument("--counts", required=True, help="counts file from `vocabtrim count`")
    p.add_argument("--draft-config", required=True, help="draft folder, Hub id or config.json")
    p.add_argument("--min-coverage", type=FRACTION, default=0.9, help="coverage floor c_min, in [0, 1]")
    p.add_argument("--alpha", type=FRACTION, default=0.5, help="weight of coverage in U(k), in [0, 1]")
    p.add_argument("--trials", type=POSITIVE, default=50, help="TPE trials")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="TPE sampler seed")
    p.add_argument("--k-min", type=POSITIVE, default=None, help="smallest k tried (default: the special ids, >= 256)")
    p.add_argument("--k-max", type=POSITIVE, default=None, help="largest k tried (default: V)")
    p.add_argument("--context-length", type=POSITIVE, default=1024, help="context length for attention FLOPs")
    p.add_argument("--latency-fit", default=None, help="latency fit JSON from `vocabtrim profile` instead of FLOPs")
    p.add_argument(
        "--objective",
        default="utility",
        choices=["utility", "speedup"],
        help="utility: the paper's U(k); speedup: predicted tokens/s (needs --acceptance and --costs)",
    )
    p.add_argument(
        "--objective-coverage",
        default="calibration",
        choices=["calibration", "heldout"],
        help="coverage used in U(k) and the floor (heldout needs --eval-counts/--eval-data)",
    )
    p.add_argument("--acceptance", default=None, help="acceptance JSON from `vocabtrim acceptance`")
    p.add_argument("--costs", default=None, help="cost model JSON from `vocabtrim profile --assisted`")
    _context_flag(p, False, "speedup objective: the draft also scores the ids already in the sequence")
    p.add_argument("--eval-counts", default=None, help="held-out counts file for out-of-domain coverage")
    _add_data_args(p, "--eval-data", required=False)
    p.add_argument("--tokenizer", default=None, help="tokenizer for --eval-data and --guard-data")
    p.add_argument(
        "--guard-data",
        default=None,
        help="chats the kept set must also hold on (e.g. the general part of your traffic): with --guard-acceptance "
        "or --target/--draft, tau there stays within --max-guard-loss of the untrimmed draft's; otherwise their "
        "coverage stays >= 1 - --max-guard-loss",
    )
    p.add_argument("--guard-acceptance", default=None, help="acceptance JSON measured on the guard chats")
    p.add_argument("--max-guard-loss", type=LOSS, default=0.03, help="largest relative tau (or coverage) loss, [0, 1)")
    p.add_argument("--target", default=None, help="target model: measure tau on --guard-data here")
    p.add_argument("--draft", default=None, help="draft model: measure tau on --guard-data here")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="dtype of --target/--draft")
    _add_batch_args(p)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_optimize)

    p = _command(sub, "trim", help="write a TrimmedDraftModel folder from a draft and a keep plan (or counts + k)")
    p.add_argument("--draft", required=True, help="draft folder or Hub id")
    p.add_argument("--gguf-file", default=None, help="GGUF file inside --draft")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the draft's)")
    p.add_argument("--target", default=None, help="target (only its config is read: a padded vocabulary V)")
    _add_plan_args(p)
    p.add_argument("--k", type=POSITIVE, default=None, help="kept vocabulary size (default: the plan's)")
    _context_flag(p, None, "score the ids already in the sequence too (default: on for tied-embedding drafts)")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="default: the checkpoint's dtype")
    p.add_argument("--num-assistant-tokens", type=POSITIVE, default=5, help="draft tokens per round")
    p.add_argument(
        "--fast-path",
        default="auto",
        choices=FAST_PATHS,
        help="assistant proposals: auto (CUDA-graph captured over a static cache on a GPU, eager elsewhere), eager "
        "(transformers' own loop) or static (the static-cache path without capture, any device)",
    )
    p.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(func=cmd_trim)

    p = _command(sub, "profile", help="time the draft step vs k (fit a + b*k), or assisted rounds (--assisted)")
    p.add_argument("--draft", required=True, help="draft folder or Hub id")
    p.add_argument("--gguf-file", default=None, help="GGUF file inside --draft")
    p.add_argument("--target", default=None, help="target model (with --assisted)")
    p.add_argument("--assisted", action="store_true", help="measure the cost model inside real generate() calls")
    p.add_argument("--gamma", type=POSITIVE, default=5, help="draft tokens per round (--assisted)")
    p.add_argument("--new-tokens", type=POSITIVE, default=32, help="tokens generated per timed call (--assisted)")
    p.add_argument("--repeats", type=POSITIVE, default=2, help="timed calls per configuration, rotated (--assisted)")
    p.add_argument(
        "--contexts", nargs=2, type=POSITIVE, default=[64, 512], help="the two prompt lengths timed (--assisted)"
    )
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="model dtype (auto: the checkpoint's)")
    p.add_argument("--device", default=None, help="device_map for the models, e.g. cuda")
    p.add_argument(
        "--ks",
        nargs="+",
        type=POSITIVE,
        default=None,
        help="k values (default 1024..65536; --assisted: 8192 65536, or V/8 and V/2 for a smaller V)",
    )
    p.add_argument("--prompt", type=POSITIVE, default=64, help="prompt tokens")
    p.add_argument("--steps", type=POSITIVE, default=8, help="decode steps per timed round")
    p.add_argument("--rounds", type=POSITIVE, default=5, help="interleaved timing rounds (median)")
    p.add_argument("--threads", type=POSITIVE, default=None, help="torch threads (default: torch's)")
    p.add_argument("--out", required=True, help="latency fit / cost model JSON")
    p.set_defaults(func=cmd_profile)

    p = _command(
        sub, "acceptance", help="exact greedy tau(k), static and with context ids, from one teacher-forced pass"
    )
    p.add_argument("--target", required=True, help="target folder or Hub id")
    p.add_argument("--draft", required=True, help="draft folder or Hub id")
    p.add_argument("--tokenizer", default=None, help="tokenizer (default: the draft's)")
    _add_data_args(p)
    _add_plan_args(p)
    p.add_argument("--ks", nargs="+", type=POSITIVE, default=None, help="k grid (default: 24 log-spaced values)")
    p.add_argument("--gamma", type=POSITIVE, default=5, help="draft tokens per round")
    p.add_argument("--max-length", type=POSITIVE, default=1024, help="tokens per chat (longer ones are cut)")
    _context_flag(p, True, "also measure tau with the ids already in the sequence scored")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="model dtype (auto: the checkpoint's)")
    p.add_argument("--out", required=True, help="acceptance JSON")
    p.set_defaults(func=cmd_acceptance, max_examples=64)

    p = _command(sub, "export", help="write a trimmed draft's kept set for SGLang, EAGLE-3 (vLLM) or FR-Spec")
    p.add_argument("--model", required=True, help="trimmed draft folder")
    p.add_argument("--format", required=True, choices=["sglang", "eagle3", "frspec"], help="engine file format")
    p.add_argument("--plan", default=None, help="keep plan: orders FR-Spec's list most frequent first")
    p.add_argument("--out", required=True, help="output file")
    p.set_defaults(func=cmd_export)

    p = _command(sub, "import", help="build a trimmed draft from an engine's token map")
    p.add_argument("--draft", required=True, help="base draft folder or Hub id")
    p.add_argument("--gguf-file", default=None, help="GGUF file inside --draft")
    p.add_argument("--token-map", required=True, help="the engine's token map file")
    p.add_argument("--format", required=True, choices=["sglang", "eagle3", "frspec"], help="token map format")
    p.add_argument("--exact", action="store_true", help="keep exactly the map's ids (no added special tokens)")
    _context_flag(p, None, "score the ids already in the sequence too (default: on for tied-embedding drafts)")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="model dtype (auto: the checkpoint's)")
    p.add_argument("--out", required=True, help="output model folder")
    p.set_defaults(func=cmd_import)

    p = _command(sub, "eagle3", help="trim an EAGLE-3 / DFlash draft head (vLLM, SGLang, SpecForge) to k of its rows")
    p.add_argument("--draft", required=True, help="EAGLE-3 / DFlash checkpoint folder")
    p.add_argument("--counts", required=True, help="counts of the target tokenizer (`vocabtrim count`)")
    p.add_argument("--out", required=True, help="output checkpoint folder")
    p.add_argument("--k", type=POSITIVE, default=None, help="rows to keep (default: chosen by --min-coverage/--alpha)")
    p.add_argument("--plan", default=None, help="keep plan of an earlier `vocabtrim eagle3` (its report folder)")
    p.add_argument("--min-coverage", type=FRACTION, default=0.9, help="coverage floor c_min, in [0, 1]")
    p.add_argument("--alpha", type=FRACTION, default=0.5, help="weight of coverage in U(k), in [0, 1]")
    p.add_argument("--trials", type=POSITIVE, default=50, help="TPE trials")
    p.add_argument("--k-min", type=POSITIVE, default=None, help="smallest k tried (default: min(256, rows))")
    p.add_argument("--seed", type=NON_NEGATIVE, default=0, help="TPE sampler seed")
    p.add_argument("--tokenizer", default=None, help="the target's tokenizer: checks the counts, names end-of-turn ids")
    p.add_argument("--report", default=None, help="optimize report folder (default: OUT.report)")
    p.set_defaults(func=cmd_eagle3)

    p = _command(
        sub, "check", help="lint a reduced-vocabulary draft checkpoint (EAGLE-3 / DFlash): d2t, t2d, head rows"
    )
    p.add_argument("model", help="checkpoint folder")
    p.add_argument("--tokenizer", default=None, help="the target's tokenizer: its end-of-turn / eos ids must be kept")
    p.set_defaults(func=cmd_check)

    p = _command(sub, "demo", help="offline end-to-end demo on tiny embedded models and data")
    p.add_argument("--out", default="vocabtrim_demo", help="output folder")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "profile" and args.ks is None and not args.assisted:  # --assisted: profile_assisted's own
        args.ks = [1024, 4096, 16384, 65536]
    try:
        import datasets

        datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # data errors are reported once, below
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"vocabtrim {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
