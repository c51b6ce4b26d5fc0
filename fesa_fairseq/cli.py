"""The `fesa` command: one subcommand per pipeline stage that is not a `fairseq-hydra-train` run."""

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from fesa_fairseq.errors import FesaError

logger = logging.getLogger("fesa_fairseq.cli")


def _prepare_iemocap(args: argparse.Namespace) -> None:
    from fesa_fairseq.recipes.iemocap import format_count_table, prepare_iemocap

    summary = prepare_iemocap(
        Path(args.iemocap_root),
        Path(args.out_dir),
        valid_fraction=args.valid_fraction,
        seed=args.seed,
        check_totals=args.check_totals,
        progress=not args.quiet,
    )
    print(f"kept {summary['utterances']} utterances; dropped codes: {summary['dropped_codes'] or 'none'}")
    print(format_count_table(summary["table"]))
    print("folds (train / valid / test):")
    for k, sizes in summary["folds"].items():
        print(f"  fold{k}: {sizes['train']} / {sizes['valid']} / {sizes['test']}")
    if summary["known_total_mismatches"]:
        print("WARNING: these counts differ from a complete IEMOCAP release (5,531 utterances):")
        for problem in summary["known_total_mismatches"]:
            print(f"  - {problem}")
    elif summary["known_totals_checked"]:
        print("counts match a complete IEMOCAP release (5,531 utterances)")
    print(f"wrote {args.out_dir}/fold{{1..5}}/{{train,valid,test}}.{{tsv,emo}}, dict.emo.txt, utterances.tsv")


def _make_demo_corpus(args: argparse.Namespace) -> None:
    from fesa_fairseq.recipes.demo_corpus import make_demo_corpus

    start = time.perf_counter()
    info = make_demo_corpus(
        Path(args.out_dir),
        utterances_per_speaker=args.utterances_per_speaker,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(f"wrote {info['utterances']} utterances to {args.out_dir} in {time.perf_counter() - start:.1f} s (seed {args.seed})")


def _add_prepare_iemocap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-iemocap",
        help="IEMOCAP release -> leave-one-session-out manifests (4 classes, exc merged into hap)",
        description="Reads SessionN/dialog/EmoEvaluation/*.txt and the wavs of SessionN/sentences/wav, keeps "
        "neu, hap+exc, ang, sad, and writes OUT_DIR/fold{1..5}/{train,valid,test}.{tsv,emo} and dict.emo.txt. "
        "Fold k tests on Session k; valid is a label-stratified holdout of the other four sessions.",
    )
    p.add_argument("iemocap_root", help="folder holding Session1 .. Session5 (IEMOCAP_full_release)")
    p.add_argument("out_dir", help="where the fold folders go")
    p.add_argument("--valid-fraction", type=float, default=0.1, help="share of each label held out of the training sessions for validation (default 0.1)")
    p.add_argument("--seed", type=int, default=1, help="seed of the validation holdout (default 1)")
    totals = p.add_mutually_exclusive_group()
    totals.add_argument("--check-totals", dest="check_totals", action="store_true", default=None, help="compare with a full release's known counts (default: unless the root is the demo corpus)")
    totals.add_argument("--no-check-totals", dest="check_totals", action="store_false", help="do not compare with a full release's known counts")
    p.set_defaults(func=_prepare_iemocap)


def _add_make_demo_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-demo-corpus",
        help="write a small synthetic emotional speech corpus in IEMOCAP's layout",
        description="5 sessions x 2 speakers of source-filter synthesised speech whose prosody depends on "
        "speaker and emotion; only some phrases of an emotional utterance carry its emotion.",
    )
    p.add_argument("out_dir", help="folder to create (it must not exist or be empty, unless --overwrite)")
    p.add_argument("--utterances-per-speaker", type=int, default=30, help="turns per speaker, all codes together (default 30: 300 turns, ~255 kept)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical files (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus at OUT_DIR (swapped in only once complete)")
    p.set_defaults(func=_make_demo_corpus)


def _evaluate(args: argparse.Namespace) -> None:
    from fesa_fairseq.evaluate import evaluate, format_confusion

    m = evaluate(args.checkpoint, args.fold_dir, args.split, args.out, device=args.device, max_tokens=args.max_tokens, progress=not args.quiet)
    print(f"{args.split} of {args.fold_dir}: {m['utterances']} utterances")
    print(f"UA {m['ua']:.2f}%   WA {m['wa']:.2f}%")
    print(format_confusion(m["confusion"], m["labels"]))
    print(f"wrote {args.out}/predictions.tsv, metrics.json, confusion.png")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a fine-tuned classifier on a split: UA, WA, confusion matrix, per-utterance predictions",
        description="Scores every utterance of FOLD_DIR/SPLIT whole (no cropping), batched by length.",
    )
    p.add_argument("checkpoint", help="a hubert_emotion_classifier checkpoint (e.g. checkpoints/checkpoint_best.pt)")
    p.add_argument("fold_dir", help="fold folder with {split}.tsv, {split}.emo and dict.emo.txt")
    p.add_argument("--split", default="test", help="which split to score (default test)")
    p.add_argument("--out", required=True, help="folder for predictions.tsv, metrics.json and confusion.png")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--max-tokens", type=int, default=1_600_000, help="audio samples per batch (default 1,600,000 = 100 s)")
    p.set_defaults(func=_evaluate)


SUBCOMMANDS: List[Callable[[argparse._SubParsersAction], None]] = [_add_prepare_iemocap, _add_make_demo_corpus, _add_evaluate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fesa", description="Frame-level emotional state alignment on fairseq HuBERT.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    # force: importing fairseq (done by importing this package) leaves the root logger at DEBUG.
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        level=logging.WARNING if args.quiet else os.environ.get("LOGLEVEL", "INFO").upper(),
        stream=sys.stderr,
        force=True,
    )
    try:
        args.func(args)
    except FesaError as e:
        print(f"fesa {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
