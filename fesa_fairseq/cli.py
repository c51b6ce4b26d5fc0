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


def _pseudo_labels(args: argparse.Namespace) -> None:
    from fesa_fairseq.evaluate import resolve_device
    from fesa_fairseq.labels.pseudo_labels import KMeansOptions, PseudoLabelJob, make_pseudo_labels
    from fesa_fairseq.labels.readers import HubertFeatureReader, MfccFeatureReader

    if args.features == "mfcc":
        reader = MfccFeatureReader()
        describe = {"features": "mfcc"}
    else:
        if args.checkpoint is None or args.layer is None:
            raise FesaError("--checkpoint and --layer are needed for HuBERT features (or pass --features mfcc)")
        reader = HubertFeatureReader(args.checkpoint, args.layer, resolve_device(args.device), args.max_chunk, data_dir=args.manifest_dir)
        describe = {"features": "hubert", "checkpoint": str(Path(args.checkpoint).resolve()), "layer": args.layer}
    job = PseudoLabelJob(
        manifest_dir=args.manifest_dir,
        splits=[s for s in args.splits.split(",") if s],
        out_dir=args.out,
        clusters=args.clusters,
        kmeans_model=args.kmeans_model,
        train_split=args.train_split,
        percent=args.percent,
        nshard=args.nshard,
        rank=args.rank,
        feature_dir=args.feature_dir,
        seed=args.seed,
        kmeans=KMeansOptions(batch_size=args.kmeans_batch_size, n_init=args.kmeans_n_init, max_iter=args.kmeans_max_iter),
        describe=describe,
    )
    summary = make_pseudo_labels(reader, job)
    if summary is None:
        print(f"dumped features of shard {args.rank}/{args.nshard} to {args.feature_dir}; run again without --rank to cluster")
        return
    print(f"K={summary['clusters']} at {summary['label_rate']:g} Hz; frames per split: {summary['frames']}")
    print(f"wrote {args.out}/{{{','.join(job.splits)}}}.km, dict.km.txt, kmeans.bin, labels.json")


def _add_pseudo_labels(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pseudo-labels",
        help="frame features of a model layer (or MFCC) -> k-means on the training split -> {split}.km labels",
        description="Dumps frame features with fairseq's simple_kmeans (streamed to disk, sharded), learns "
        "MiniBatchKMeans on the training split only (or applies --kmeans-model), labels every split, and checks "
        "every label line against the utterance's frame count.",
    )
    p.add_argument("--manifest-dir", required=True, help="folder with {split}.tsv (a fold folder)")
    p.add_argument("--splits", default="train,valid,test", help="comma-separated splits to label (default train,valid,test)")
    p.add_argument("--out", required=True, help="folder for {split}.km, dict.km.txt, kmeans.bin, labels.json")
    p.add_argument("--features", choices=["hubert", "mfcc"], default="hubert", help="hubert (a checkpoint's layer) or mfcc (bootstrap, 100 Hz)")
    p.add_argument("--checkpoint", help="HuBERT-family checkpoint: pretraining, official release, or fine-tuned classifier")
    p.add_argument("--layer", type=int, help="transformer layer whose output is clustered (1 = first; 9 is the paper's best)")
    p.add_argument("--clusters", type=int, help="K (50 is the paper's best; 100, 150 tried)")
    p.add_argument("--kmeans-model", help="apply this fitted k-means (e.g. hubert_base_ls960_L9_km500.bin) instead of learning one")
    p.add_argument("--train-split", default="train", help="the only split k-means is fitted on (default train)")
    p.add_argument("--percent", type=float, default=-1, help="fit k-means on this share of training utterances; -1 for all (default)")
    p.add_argument("--nshard", type=int, default=1, help="split each manifest into this many feature shards")
    p.add_argument("--rank", type=int, help="only dump the features of this shard, then stop (for parallel jobs; needs --feature-dir)")
    p.add_argument("--feature-dir", help="keep features here (reused when complete); default: a temporary folder in --out")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--max-chunk", type=int, default=1_600_000, help="longest piece of audio fed to the model at once, in samples")
    p.add_argument("--seed", type=int, default=0, help="seed of k-means and of its --percent sample")
    p.add_argument("--kmeans-batch-size", type=int, default=10000, help="MiniBatchKMeans batch size (default 10,000)")
    p.add_argument("--kmeans-n-init", type=int, default=20, help="MiniBatchKMeans initialisations (default 20)")
    p.add_argument("--kmeans-max-iter", type=int, default=100, help="MiniBatchKMeans iterations (default 100)")
    p.set_defaults(func=_pseudo_labels)


SUBCOMMANDS: List[Callable[[argparse._SubParsersAction], None]] = [
    _add_prepare_iemocap,
    _add_make_demo_corpus,
    _add_evaluate,
    _add_pseudo_labels,
]


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
