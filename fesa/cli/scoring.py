"""Scoring: evaluate (a fine-tuned classifier), acoustic-baseline (the MFCC floor), eder, report."""

import argparse
import logging
from pathlib import Path

from fesa.cli.common import Subparsers, add_device, add_neutral, add_options, add_own_out, output_path, print_scores, values
from fesa.errors import FesaError
from fesa.options import METRICS_FILE, BaselineOptions, ScoringOptions

logger = logging.getLogger(__name__)

OLD_NAME = "reference"  # fesa acoustic-baseline's name until this release
SCORING_FIELDS = ("precision", "batch_seconds")


def add_parsers(sub: Subparsers) -> None:
    _add_evaluate(sub)
    _add_acoustic_baseline(sub)
    _add_eder(sub)
    _add_report(sub)


def _evaluate(args: argparse.Namespace) -> None:
    from fesa.inference.references import segment_truth
    from fesa.pipeline.evaluate import evaluate, mapped_fold, parse_mapping

    ScoringOptions(**values(args, SCORING_FIELDS)).check()
    fold_dir, cross = Path(args.fold_dir), None
    if args.map:  # another corpus: its split relabelled with the model's classes, in a fold folder of the output's
        cross = {"cross_corpus": mapped_fold(args.checkpoint, fold_dir, args.split, parse_mapping(args.map), Path(args.out) / "mapped-fold")}
        fold_dir = Path(args.out) / "mapped-fold"
    reference = segment_truth(args.reference, fold_dir)
    about = {**(cross or {}), **({"cell": args.cell} if args.cell else {})}
    m = evaluate(
        args.checkpoint,
        fold_dir,
        args.split,
        args.out,
        device=args.device,
        progress=not args.quiet,
        timelines=args.timelines,
        reference=reference,
        neutral=args.neutral,
        precision=args.precision,
        about=about,
        batch_seconds=args.batch_seconds,
    )
    print_scores(m, args)
    if cross:
        c = cross["cross_corpus"]
        print(f"cross-corpus: {c['kept']} utterances scored; dropped (no counterpart): {c['dropped'] or 'none'}")
        print(f"model classes no label maps to: {', '.join(c['unmapped_classes']) or 'none'}")


def _add_evaluate(sub: Subparsers) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a fine-tuned classifier on a split: UA, WA, confusion matrix, per-utterance predictions",
        description="Scores every utterance of FOLD_DIR/SPLIT whole (no cropping), alone and once, as fesa predict does.",
    )
    p.add_argument("checkpoint", help="a hubert_emotion_classifier checkpoint (e.g. checkpoints/checkpoint_best.pt)")
    p.add_argument("fold_dir", help="fold folder with {split}.tsv, {split}.emo and dict.emo.txt")
    p.add_argument("--split", default="test", help="which split to score (default test)")
    add_own_out(p, "folder for predictions.tsv, metrics.json and confusion.png", (METRICS_FILE,))
    add_device(p)
    add_options(p, ScoringOptions, SCORING_FIELDS)
    p.add_argument("--timelines", type=int, default=0, help="also draw N pictures: spectrogram + attention weight of every frame")
    p.add_argument(
        "--reference",
        help="true emotion segments, fesa eder's json (fesa convert-segments) or utt_id start end emotion lines "
        "(a demo corpus's fesa_demo_segments.tsv): adds frame-level figures (EDER, attention focus)",
    )
    add_neutral(p)
    p.add_argument(
        "--map",
        metavar="RAW=CLASS,...",
        help="score on another corpus: FOLD_DIR's labels mapped to the model's classes (e.g. angry=ang,happy=hap); "
        "utterances whose label has no counterpart are dropped and counted",
    )
    _add_cell(p)
    p.set_defaults(func=_evaluate)


def _acoustic_baseline(args: argparse.Namespace) -> None:
    from fesa.pipeline.reference import reference

    if args.command == OLD_NAME:
        logger.warning(
            "fesa %s is now fesa acoustic-baseline ('reference' names true segments only); the old name goes in the next release", OLD_NAME
        )
    about = {"cell": args.cell} if args.cell else None
    m = reference(args.fold_dir, args.out, split=args.split, seed=args.seed, progress=not args.quiet, about=about)
    print(f"acoustic reference (MFCC statistics + logistic regression, C={m['C']:g} chosen on valid UA)")
    print_scores(m, args)


def _add_acoustic_baseline(sub: Subparsers) -> None:
    p = sub.add_parser(
        "acoustic-baseline",
        aliases=[OLD_NAME],
        help=f"the acoustic reference: MFCC statistics + class-balanced logistic regression, scored like evaluate ({OLD_NAME}: its old name)",
        description="No self-supervised model: per utterance the mean, std and 10th/90th percentiles of 13 MFCCs "
        "and the log duration; a class-balanced logistic regression fitted on train, its strength chosen on valid "
        "UA, refitted on train + valid and scored on SPLIT. Writes what fesa evaluate writes; fesa report shows it "
        "as the first row of every table, the floor any SSL model should clear.",
    )
    p.add_argument("fold_dir", help="fold folder with {train,valid,SPLIT}.{tsv,emo} and dict.emo.txt")
    p.add_argument("--split", default="test", help="which split to score (default test)")
    add_own_out(p, "folder for predictions.tsv, metrics.json and confusion.png", (METRICS_FILE,))
    add_options(p, BaselineOptions, ["seed"])
    _add_cell(p)
    p.set_defaults(func=_acoustic_baseline)


def _cell(text: str) -> dict:
    from fesa.pipeline.cell import read_json_cell

    try:
        return read_json_cell(text).record()
    except FesaError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _add_cell(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cell",
        type=_cell,
        metavar="JSON",
        help="the experiment cell the result belongs to, written into metrics.json for fesa report: a json object of stage, "
        "fold, model, layer, clusters, targets, pooling, seed (fesa run passes it)",
    )


def _eder(args: argparse.Namespace) -> None:
    from fesa.files import atomic_write_json
    from fesa.inference.eder import eder, format_confusion_seconds, read_segments_json

    m = eder(
        read_segments_json(Path(args.reference), reference=True),
        read_segments_json(Path(args.hypothesis)),
        neutral=args.neutral,
        first_letter=args.first_letter,
    )
    print(f"EDER {m['eder']:.2f}% over {m['utterances']} utterances (neutral: {args.neutral})")
    print(format_confusion_seconds(m["confusion_seconds"]))
    if args.out:
        atomic_write_json(Path(args.out), m, indent=1)


def _add_eder(sub: Subparsers) -> None:
    p = sub.add_parser(
        "eder",
        help="Emotion Diarization Error Rate of predicted segments against a reference (SpeechBrain's)",
        description="EDER as speechbrain/utils/EDER.py defines it, averaged over the reference's utterances; "
        "several events per reference utterance are allowed (time between them is neutral).",
    )
    p.add_argument("--reference", required=True, help="true segments: {utt: {wav, duration, emotion: [{emo, start, end}]}}")
    p.add_argument("--hypothesis", required=True, help="predicted segments in the same layout (fesa predict's segments.json)")
    add_neutral(p)
    p.add_argument("--first-letter", action="store_true", help="compare labels by first letter, as SpeechBrain's ZED recipe does")
    p.add_argument("--out", type=output_path, help="also write the figures (per utterance too) to this json")
    p.set_defaults(func=_eder)


def _report(args: argparse.Namespace) -> None:
    from fesa.pipeline.report import make_report

    report = make_report(Path(args.exp_dir))
    print(report["markdown"])
    print(f"wrote {report['dir']}/report.md, report.json, confusion_*.png")


def _add_report(sub: Subparsers) -> None:
    p = sub.add_parser(
        "report",
        help="UA/WA per fold and mean +- std, confusion matrices, the Table 1 grid",
        description="Reads EXP_DIR/fold*/evaluate/*/metrics.json and writes EXP_DIR/report/.",
    )
    p.add_argument("exp_dir", help="an experiment folder of fesa run")
    p.set_defaults(func=_report)
