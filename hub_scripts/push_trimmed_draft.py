#!/usr/bin/env python
"""Count -> optimise -> trim a draft and push it to the Hugging Face Hub with a model card; or push a folder already
written by `vocabtrim trim` or `vocabtrim eagle3` (``--folder``), after checking it.

    python hub_scripts/push_trimmed_draft.py --draft Qwen/Qwen2.5-0.5B-Instruct --data chats.jsonl \\
        --repo-id me/qwen2.5-0.5b-instruct-trimmed --min-coverage 0.9 --alpha 0.5
    python hub_scripts/push_trimmed_draft.py --folder llama3.1-8b-eagle3-trimmed --repo-id me/eagle3-trimmed

Input: a draft (Hub id or local folder, ``--gguf-file`` for GGUF) and either chat data (``--data``) or saved counts
(``--counts``); the kept set comes from a keep plan (``--plan`` / ``--summary`` of ``vocabtrim optimize``), from
``--k`` (the top k of the counts), or is optimised here. The folder is written to ``--out`` first; ``--dry-run`` stops
there. Everything that can be checked (repo id, token, tokenizer vs target, the folder itself) is checked before
anything is uploaded; a failed upload leaves the folder whole. The model card names the base model only by its Hub
id (``--base-model`` for a draft loaded from a local folder) and the data by its dataset id or file name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hf_vocabtrim.data.chats import load_chats
from hf_vocabtrim.data.counting import count_tokens
from hf_vocabtrim.data.counts import TokenCounts, vocab_hash
from hf_vocabtrim.engines.eagle3 import check_head, load_head
from hf_vocabtrim.hub import (
    check_trimmed_folder,
    model_card,
    public_name,
    push_folder,
    resolve_token,
    validate_repo_id,
)
from hf_vocabtrim.loaders import DTYPES, load_causal_lm, load_draft_config, load_tokenizer
from hf_vocabtrim.model.trimming import trim_draft
from hf_vocabtrim.selection.keep_plan import KeepPlan
from hf_vocabtrim.selection.planning import Utility, plan
from hf_vocabtrim.selection.report import write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draft", default=None, help="base draft: Hub id or local folder")
    parser.add_argument(
        "--folder", default=None, help="push this folder (from `vocabtrim trim` or `vocabtrim eagle3`) as it is"
    )
    parser.add_argument("--gguf-file", default=None, help="GGUF file inside --draft")
    parser.add_argument("--tokenizer", default=None, help="tokenizer (default: the draft's)")
    parser.add_argument("--target", default=None, help="target model id/folder: its tokenizer must match the draft's")
    parser.add_argument("--base-model", default=None, help="Hub id of the base draft for the card (default: --draft)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument("--data", help="chat data to count (file, folder or Hub dataset id)")
    data.add_argument("--counts", help="counts file from `vocabtrim count`")
    parser.add_argument("--split", default="train")
    parser.add_argument("--eval-data", default=None, help="held-out chat data for out-of-domain coverage")
    choose = parser.add_mutually_exclusive_group()
    choose.add_argument("--k", type=int, default=None, help="kept vocabulary size (skip optimisation)")
    choose.add_argument("--summary", default=None, help="summary.json from `vocabtrim optimize` (its keep plan)")
    choose.add_argument("--plan", default=None, help="keep plan from `vocabtrim optimize` (folder or file)")
    parser.add_argument("--min-coverage", type=float, default=0.9)
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--k-min", type=int, default=None)
    parser.add_argument("--dtype", default="auto", choices=DTYPES)
    parser.add_argument("--num-assistant-tokens", type=int, default=5)
    parser.add_argument(
        "--context-tokens",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score the ids already in the sequence too (default: on for tied-embedding drafts)",
    )
    parser.add_argument("--repo-id", required=True, help="target Hub repository, namespace/name")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None, help="branch to push to (created if missing)")
    parser.add_argument("--commit-message", default=None)
    parser.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or the stored login)")
    parser.add_argument("--license", default=None, help="license for the card (default: the base model card's)")
    parser.add_argument("--out", default=None, help="local folder to write (default: ./trimmed/<repo name>)")
    parser.add_argument("--dry-run", action="store_true", help="write the folder and the card; upload nothing")
    return parser.parse_args(argv)


def base_license(draft: str) -> str | None:
    """The license in the base model's card metadata (local README.md or the Hub), if any."""
    try:
        from huggingface_hub import ModelCard

        path = Path(draft) / "README.md"
        card = ModelCard.load(path) if path.is_file() else ModelCard.load(draft)
        return card.data.get("license")
    except Exception:  # no card, offline, or not a Hub id: the card simply has no license line
        return None


def check_folder(folder: Path) -> str:
    """Lint a folder to push: an EAGLE-3 / DFlash head (`vocabtrim check`) or a trimmed draft; what it holds."""
    config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
    if config.get("model_type") == "trimmed_draft":
        check_trimmed_folder(folder)
        return f"trimmed draft (k={config.get('draft_vocab_size')})"
    head = load_head(folder)
    problems = check_head(head)
    if problems:
        raise ValueError(f"{folder} does not lint clean: " + " | ".join(problems))
    return f"{head.layout} head (k={head.draft_vocab_size})"


def upload(out: Path, args: argparse.Namespace, token: str | None, what: str) -> int:
    """Push ``out``; on failure say so and leave the folder whole."""
    try:
        url = push_folder(
            out,
            args.repo_id,
            token=token or "",
            private=args.private,
            revision=args.revision,
            commit_message=args.commit_message or f"Upload {what}",
        )
    except Exception as err:
        print(
            f"upload failed: {err}\nthe local folder {out} is complete; push it again with this script "
            "(--folder), or `huggingface-cli upload`.",
            file=sys.stderr,
        )
        return 1
    print(f"pushed {out} to {args.repo_id}: {url}")
    return 0


def run(args: argparse.Namespace) -> int:
    validate_repo_id(args.repo_id)
    if args.folder:
        what = check_folder(Path(args.folder))
        token = None if args.dry_run else resolve_token(args.token)
        print(f"checked {args.folder}: {what}")
        if args.dry_run:
            print("dry run: nothing uploaded")
            return 0
        return upload(Path(args.folder), args, token, what)
    if not args.draft or not (args.data or args.counts):
        raise ValueError("pass --folder, or --draft with --data or --counts.")
    token = None if args.dry_run else resolve_token(args.token)
    out = Path(args.out or Path("trimmed") / args.repo_id.split("/")[-1])

    tokenizer = load_tokenizer(args.tokenizer or args.draft, args.gguf_file)
    target_config = None
    if args.target:
        target_tokenizer = load_tokenizer(args.target)
        if vocab_hash(target_tokenizer) != vocab_hash(tokenizer):
            raise ValueError(
                f"draft/target tokenizer mismatch: {args.target}'s tokenizer differs from the draft's "
                f"({len(target_tokenizer)} vs {len(tokenizer)} tokens); a trimmed draft must share it."
            )
        target_config = load_draft_config(args.target)

    if args.counts:
        counts = TokenCounts.load(args.counts)
        counts.check_tokenizer(tokenizer)
    else:
        counts = count_tokens(tokenizer, load_chats(args.data, split=args.split), source=public_name(args.data))
    heldout = None
    if args.eval_data:
        heldout = count_tokens(
            tokenizer, load_chats(args.eval_data, split=args.split), source=public_name(args.eval_data)
        )

    print(f"loading the draft {args.draft} ...", flush=True)
    draft = load_causal_lm(args.draft, args.gguf_file, args.dtype)
    draft_config = draft.config.get_text_config(decoder=True)
    summary: dict = {}
    if args.summary or args.plan:
        if args.summary:
            summary = json.loads(Path(args.summary).read_text())
        keep = KeepPlan.load(args.plan or Path(args.summary).parent)
    elif args.k is not None:
        keep = KeepPlan.from_counts(counts, draft_config, draft.generation_config).with_k(args.k)
    else:
        result = plan(
            counts,
            draft_config,
            objective=Utility(args.alpha),
            generation_config=draft.generation_config,
            heldout=heldout,
            min_coverage=args.min_coverage,
            k_min=args.k_min,
            n_trials=args.trials,
            alpha=args.alpha,
        )
        summary = write_report(result, out.parent / f"{out.name}_optimize", draft_config, alpha=args.alpha)
        keep = result.keep_plan
    data_name = args.data or counts.source
    model = trim_draft(
        draft,
        keep,
        tokenizer=tokenizer,
        target=target_config,
        counts=counts,
        context_tokens=args.context_tokens,
        assistant_settings={"num_assistant_tokens": args.num_assistant_tokens},
        trimming={
            "base_model": public_name(args.base_model or args.draft),
            "data": public_name(data_name),
            "latency_reduction": summary.get("latency_reduction"),
            "heldout_coverage": summary.get("heldout_coverage"),
        },
    )
    k = model.config.draft_vocab_size
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    card = model_card(
        args.repo_id,
        args.base_model or args.draft,
        k=k,
        vocab_size=model.full_vocab_size,
        coverage=model.config.trimming["coverage"],
        heldout_coverage=summary.get("heldout_coverage"),
        latency_reduction=summary.get("latency_reduction"),
        data=data_name,
        context_tokens=model.config.context_tokens,
        license=args.license or base_license(args.draft),
    )
    (out / "README.md").write_text(card)
    check_trimmed_folder(out)
    print(f"wrote {out} (k={k:,} of V={model.full_vocab_size:,}, coverage {model.config.trimming['coverage']:.4f})")
    if args.dry_run:
        print("dry run: nothing uploaded")
        return 0
    return upload(out, args, token, f"trimmed draft (k={k})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"push_trimmed_draft: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
