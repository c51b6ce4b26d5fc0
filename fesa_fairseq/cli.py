"""The `fesa` command: one subcommand per pipeline stage that is not a `fairseq-hydra-train` run."""

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

from fesa_fairseq.devices import DEVICE_HELP
from fesa_fairseq.errors import FesaError, StageFailed

logger = logging.getLogger("fesa_fairseq.cli")

# Defaults from measurements (README: Precision). Label dumps: bf16 labels agree with fp32's on >= 0.999 of frames
# and dump 1.75x faster (benchmarks/precision.py), so auto. Scoring: bf16 moved a demo fold's test UA by 2.5 points
# and gave the tiny model no speed (benchmarks/export.py), so fp32 unless asked.
LABEL_DUMP_PRECISION = "auto"
SCORING_PRECISION = "fp32"


def _prepare_iemocap(args: argparse.Namespace) -> None:
    from fesa_fairseq.corpora.demo import is_demo_corpus
    from fesa_fairseq.corpora.iemocap import format_count_table, prepare_iemocap

    check_totals = args.check_totals if args.check_totals is not None else not is_demo_corpus(Path(args.iemocap_root))
    summary = prepare_iemocap(
        Path(args.iemocap_root),
        Path(args.out_dir),
        valid_fraction=args.valid_fraction,
        seed=args.seed,
        check_totals=check_totals,
        progress=not args.quiet,
        overwrite=args.overwrite,
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
    from fesa_fairseq.corpora.demo import SourceFilter, make_demo_corpus

    if args.synthesizer == "espeak":
        from fesa_fairseq.corpora.espeak import Espeak

        synth = Espeak()
    else:
        synth = SourceFilter()
    start = time.perf_counter()
    info = make_demo_corpus(
        Path(args.out_dir),
        utterances_per_speaker=args.utterances_per_speaker,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
        synth=synth,
    )
    print(f"wrote {info['utterances']} utterances to {args.out_dir} in {time.perf_counter() - start:.1f} s (seed {args.seed})")


def _make_pretraining_corpus(args: argparse.Namespace) -> None:
    from fesa_fairseq.corpora.demo import make_pretraining_corpus

    info = make_pretraining_corpus(
        Path(args.out_dir),
        speakers=args.speakers,
        utterances_per_speaker=args.utterances_per_speaker,
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.quiet,
    )
    print(
        f"wrote {info['utterances']} unlabelled utterances ({info['seconds'] / 60:.1f} min) of {info['speakers']} speakers "
        f"to {args.out_dir}: train.tsv, valid.tsv"
    )


def _add_make_pretraining_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-pretraining-corpus",
        help="write unlabelled synthetic speech of speakers outside every session, to pretrain the demo's source model",
        description="The demo's stand-in for LibriSpeech: the demo synthesiser with speakers that belong to no session "
        "and a prosody drawn at random for every phrase, so it varies as speech does but carries no emotion label. "
        "Writes OUT_DIR/{train,valid}.tsv (fairseq manifests) and the wavs.",
    )
    p.add_argument("out_dir", type=_path, help="folder to create (it must not exist or be empty, unless --overwrite)")
    p.add_argument("--speakers", type=int, default=12, help="speakers, alternately female and male (default 12)")
    p.add_argument("--utterances-per-speaker", type=int, default=40, help="utterances per speaker (default 40)")
    p.add_argument("--seed", type=int, default=1000, help="the same seed gives byte-identical files (default 1000)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a corpus this command wrote at OUT_DIR (swapped in only once complete; any other folder is refused)",
    )
    p.set_defaults(func=_make_pretraining_corpus)


def _add_prepare_iemocap(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "prepare-iemocap",
        help="IEMOCAP release -> leave-one-session-out manifests (4 classes, exc merged into hap)",
        description="Reads SessionN/dialog/EmoEvaluation/*.txt and the wavs of SessionN/sentences/wav, keeps "
        "neu, hap+exc, ang, sad, and writes OUT_DIR/fold{1..5}/{train,valid,test}.{tsv,emo} and dict.emo.txt. "
        "Fold k tests on Session k; valid is a label-stratified holdout of the other four sessions.",
    )
    p.add_argument("iemocap_root", help="folder holding Session1 .. Session5 (IEMOCAP_full_release)")
    p.add_argument("out_dir", type=_path, help="where the fold folders go")
    p.add_argument(
        "--valid-fraction", type=float, default=0.1, help="share of each label held out of the training sessions for validation (default 0.1)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the validation holdout (default 1)")
    totals = p.add_mutually_exclusive_group()
    totals.add_argument(
        "--check-totals",
        dest="check_totals",
        action="store_true",
        default=None,
        help="compare with a full release's known counts (default: unless the root is the demo corpus)",
    )
    totals.add_argument("--no-check-totals", dest="check_totals", action="store_false", help="do not compare with a full release's known counts")
    p.add_argument("--overwrite", action="store_true", help="replace the manifests already in OUT_DIR (swapped in whole once all are written)")
    p.set_defaults(func=_prepare_iemocap)


def _add_make_demo_corpus(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-demo-corpus",
        help="write a small synthetic emotional speech corpus in IEMOCAP's layout",
        description="5 sessions x 2 speakers of source-filter synthesised speech whose prosody depends on "
        "speaker and emotion; only some phrases of an emotional utterance carry its emotion.",
    )
    p.add_argument("out_dir", type=_path, help="folder to create (it must not exist or be empty, unless --overwrite)")
    p.add_argument("--utterances-per-speaker", type=int, default=30, help="turns per speaker, all codes together (default 30: 300 turns, ~255 kept)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical files (default 0)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a corpus this command wrote at OUT_DIR (swapped in only once complete; any other folder is refused)",
    )
    p.add_argument(
        "--synthesizer",
        choices=["source-filter", "espeak"],
        default="source-filter",
        help="source-filter (the demo's, no dependency) or espeak (espeak-ng voices and words: a corpus made "
        "differently, to check that a configuration is not tuned to the demo's)",
    )
    p.set_defaults(func=_make_demo_corpus)


def _evaluate(args: argparse.Namespace) -> None:
    from fesa_fairseq.corpora.demo import find_demo_root
    from fesa_fairseq.inference.eder import read_segments_json
    from fesa_fairseq.inference.references import convert_references
    from fesa_fairseq.pipeline.evaluate import evaluate

    if args.reference:
        reference = read_segments_json(Path(args.reference), reference=True)
    else:  # the demo corpus carries its segment truth
        root = find_demo_root(Path(args.fold_dir) / f"{args.split}.tsv")
        reference = convert_references(root, "demo") if root else None
    m = evaluate(
        args.checkpoint,
        args.fold_dir,
        args.split,
        args.out,
        device=args.device,
        progress=not args.quiet,
        timelines=args.timelines,
        reference=reference,
        neutral=args.neutral,
        precision=args.precision,
    )
    _print_scores(m, args)


def _print_scores(m: Dict[str, object], args: argparse.Namespace) -> None:
    from fesa_fairseq.pipeline.evaluate import format_confusion

    print(f"{args.split} of {args.fold_dir}: {m['utterances']} utterances")
    print(f"UA {m['ua']:.2f}%   WA {m['wa']:.2f}%")
    frame = m.get("frame_level") or {}
    if frame:
        focus = "-" if frame["attention_focus"] is None else f"{frame['attention_focus']:.2f}"
        print(
            f"frame level ({frame['utterances']} utterances with true segments): EDER {frame['eder']:.2f}%   "
            f"attention focus {focus} (pooling weight share on emotional segments / their share of time; 1 = none)"
        )
    print(format_confusion(m["confusion"], m["labels"]))
    print(f"wrote {args.out}/predictions.tsv, metrics.json, confusion.png")


def _reference(args: argparse.Namespace) -> None:
    from fesa_fairseq.pipeline.reference import reference

    m = reference(args.fold_dir, args.out, split=args.split, seed=args.seed, progress=not args.quiet)
    print(f"acoustic reference (MFCC statistics + logistic regression, C={m['C']:g} chosen on valid UA)")
    _print_scores(m, args)


def _add_reference(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reference",
        help="the acoustic reference: MFCC statistics + class-balanced logistic regression, scored like evaluate",
        description="No self-supervised model: per utterance the mean, std and 10th/90th percentiles of 13 MFCCs "
        "and the log duration; a class-balanced logistic regression fitted on train, its strength chosen on valid "
        "UA, refitted on train + valid and scored on SPLIT. Writes what fesa evaluate writes; fesa report shows it "
        "as the first row of every table, the floor any SSL model should clear.",
    )
    p.add_argument("fold_dir", help="fold folder with {train,valid,SPLIT}.{tsv,emo} and dict.emo.txt")
    p.add_argument("--split", default="test", help="which split to score (default test)")
    p.add_argument("--out", type=_path, required=True, help="folder for predictions.tsv, metrics.json and confusion.png")
    p.add_argument("--seed", type=int, default=0, help="seed of the logistic regression")
    p.set_defaults(func=_reference)


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score a fine-tuned classifier on a split: UA, WA, confusion matrix, per-utterance predictions",
        description="Scores every utterance of FOLD_DIR/SPLIT whole (no cropping), alone and once, as fesa predict does.",
    )
    p.add_argument("checkpoint", help="a hubert_emotion_classifier checkpoint (e.g. checkpoints/checkpoint_best.pt)")
    p.add_argument("fold_dir", help="fold folder with {split}.tsv, {split}.emo and dict.emo.txt")
    p.add_argument("--split", default="test", help="which split to score (default test)")
    p.add_argument("--out", type=_path, required=True, help="folder for predictions.tsv, metrics.json and confusion.png")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    _add_precision(p, SCORING_PRECISION)
    p.add_argument("--timelines", type=int, default=0, help="also draw N pictures: spectrogram + attention weight of every frame")
    p.add_argument(
        "--reference",
        help="true emotion segments (fesa convert-segments): adds frame-level figures (EDER, "
        "attention focus); a demo corpus's own are found by themselves",
    )
    p.add_argument("--neutral", default="neu", help="the label of time no reference segment covers (default neu)")
    p.set_defaults(func=_evaluate)


def _pseudo_labels(args: argparse.Namespace) -> None:
    from fesa_fairseq.devices import precision_name, resolve_device, resolve_precision
    from fesa_fairseq.labels.pseudo_labels import KMeansOptions, PseudoLabelJob, make_pseudo_labels
    from fesa_fairseq.labels.readers import HubertFeatureReader, MfccFeatureReader

    if args.features == "mfcc":
        reader = MfccFeatureReader()
        describe = {"features": "mfcc"}
    else:
        if args.checkpoint is None or args.layer is None:
            raise FesaError("--checkpoint and --layer are needed for HuBERT features (or pass --features mfcc)")
        device = resolve_device(args.device)
        precision = resolve_precision(args.precision, device)
        reader = HubertFeatureReader(args.checkpoint, args.layer, device, args.max_chunk, data_dir=args.manifest_dir, precision=precision)
        describe = {
            "features": "hubert",
            "checkpoint": str(Path(args.checkpoint).resolve()),
            "layer": args.layer,
            "precision": precision_name(precision),
        }
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
        kmeans=KMeansOptions(
            backend=args.kmeans_backend, batch_size=args.kmeans_batch_size, n_init=args.kmeans_n_init, max_iter=args.kmeans_max_iter
        ),
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
    p.add_argument("--out", type=_path, required=True, help="folder for {split}.km, dict.km.txt, kmeans.bin, labels.json")
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
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    p.add_argument("--max-chunk", type=int, default=1_600_000, help="longest piece of audio fed to the model at once, in samples")
    _add_precision(p, LABEL_DUMP_PRECISION)
    p.add_argument("--seed", type=int, default=0, help="seed of k-means and of its --percent sample")
    _add_kmeans_backend(p)
    p.add_argument("--kmeans-batch-size", type=int, default=10000, help="sklearn: MiniBatchKMeans batch size (default 10,000)")
    p.add_argument("--kmeans-n-init", type=int, help="restarts (sklearn n_init, default 20; faiss nredo, default 1)")
    p.add_argument("--kmeans-max-iter", type=int, help="iterations (sklearn max_iter, default 100; faiss niter, default 25)")
    p.set_defaults(func=_pseudo_labels)


def _add_precision(p: argparse.ArgumentParser, default: str) -> None:
    from fesa_fairseq.devices import PRECISION_HELP, PRECISIONS

    p.add_argument("--precision", choices=PRECISIONS, default=default, help=f"{PRECISION_HELP} (default {default}; README: Precision)")


def _add_kmeans_backend(p: argparse.ArgumentParser) -> None:
    from fesa_fairseq.labels.kmeans_backends import BACKENDS

    p.add_argument(
        "--kmeans-backend",
        choices=BACKENDS,
        default="faiss",
        help="faiss (default; fast) or sklearn (fairseq's learn_kmeans itself: MiniBatchKMeans, k-means++)",
    )


def _analyze_clusters(args: argparse.Namespace) -> None:
    from fesa_fairseq.devices import resolve_device, resolve_precision
    from fesa_fairseq.labels.analyze_clusters import analyze_clusters, format_table
    from fesa_fairseq.labels.pseudo_labels import KMeansOptions
    from fesa_fairseq.labels.readers import HubertFeatureReader

    layers = _ints(args.layers, "--layers")
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    reader = HubertFeatureReader(args.checkpoint, max(layers), device, data_dir=args.manifest_dir, precision=precision)
    result = analyze_clusters(
        reader,
        args.manifest_dir,
        layers,
        _ints(args.clusters, "--clusters"),
        args.out,
        max_utterances=args.max_utterances,
        seed=args.seed,
        kmeans=KMeansOptions(backend=args.kmeans_backend, n_init=args.kmeans_n_init),
        progress=not args.quiet,
    )
    print(format_table(result))
    print(f"wrote {args.out}/analysis.md, analysis.json, clusters.png")


def _path(text: str) -> str:
    """An output path: an empty one would be the working folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a file or folder name")
    return text


def _device(text: str) -> str:
    from fesa_fairseq.devices import check_device_name

    try:
        return check_device_name(text, "")
    except FesaError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None


def _ints(text: str, option: str) -> List[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError as e:
        raise FesaError(f"{option} takes comma-separated integers, got {text!r}") from e


def _add_analyze_clusters(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze-clusters",
        help="purity and NMI of k-means clusters of each layer's frames against utterance emotions (layer x K grid)",
        description="The paper's Table 1 grid in minutes: for each layer and K, k-means on frames of a sample of "
        "training utterances, scored against utterance labels on the validation split; a table and a heat map.",
    )
    p.add_argument("--manifest-dir", required=True, help="fold folder with {train,valid}.{tsv,emo} and dict.emo.txt")
    p.add_argument("--checkpoint", required=True, help="HuBERT-family checkpoint (e.g. the fold's fine-tuned TAPT model)")
    p.add_argument("--layers", default="6,9,11", help="comma-separated layers (default 6,9,11)")
    p.add_argument("--clusters", default="50,100,150", help="comma-separated K (default 50,100,150)")
    p.add_argument("--out", type=_path, required=True, help="folder for analysis.md, analysis.json and clusters.png")
    p.add_argument("--max-utterances", type=int, default=300, help="utterances sampled per split (default 300)")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    _add_precision(p, LABEL_DUMP_PRECISION)
    p.add_argument("--seed", type=int, default=0, help="seed of the utterance sample and of k-means")
    _add_kmeans_backend(p)
    p.add_argument("--kmeans-n-init", type=int, help="restarts per cell (sklearn: default 3 here; faiss: default 1)")
    p.set_defaults(func=_analyze_clusters)


def _run(args: argparse.Namespace) -> None:
    from fesa_fairseq.pipeline.run import RunRequest, run_experiment

    request = RunRequest(
        config=Path(args.config),
        overrides=list(args.overrides),
        exp_dir=Path(args.exp_dir) if args.exp_dir else None,
        folds=None if args.folds is None else _ints(args.folds, "--folds"),
        stages=args.stages,
        grid=list(args.grid or []),
        dry_run=args.dry_run,
        slurm=args.slurm,
        only=args.only,
    )
    outcome = run_experiment(request)
    if outcome.script is not None:
        print(outcome.script)
    elif args.slurm:
        print("\n".join(outcome.sbatch))
        print(f"{'wrote' if args.dry_run else 'submitted'} {len(outcome.sbatch)} job scripts under {outcome.exp / 'slurm'}")
    elif outcome.failed:
        for fold, message in outcome.failed.items():
            print(f"{fold}: FAILED: {message}", file=sys.stderr)
        raise StageFailed(f"{len(outcome.failed)} fold(s) failed; completed stages are kept, run the same command again to resume")
    elif outcome.report is not None:
        print(outcome.report["markdown"])
        print(f"report: {outcome.report['dir']}/report.md, report.json, confusion_*.png; logs: {outcome.exp / 'logs'}")


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="the whole method, fold by fold: every stage a command, resumable, local or on SLURM",
        description="Stages: prepare, tapt-labels, tapt, tapt-finetune, emotion-labels, cpt, finetune, evaluate. Each "
        "is logged as the command it runs; complete stages are skipped; --dry-run prints them all as a shell script.",
    )
    p.add_argument("config", help="experiment yaml (see examples/iemocap/experiment.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value changes to the experiment config, e.g. emotion_labels.layer=6")
    p.add_argument("--exp-dir", type=_path, help="experiment folder (default exp/<config name>)")
    p.add_argument("--folds", help="comma-separated folds (default: the config's)")
    p.add_argument("--stages", help="a range FIRST:LAST of the stages, or a comma-separated list (default all)")
    p.add_argument("--grid", nargs="+", metavar="NAME=V1,V2", help="the Table 1 grid: layer=6,9,11 K=50,100,150 pooling=attention,mean")
    p.add_argument("--dry-run", action="store_true", help="print the commands as a shell script (with --slurm: write the job scripts only)")
    p.add_argument("--slurm", action="store_true", help="write one sbatch script per stage and fold and submit them with dependencies")
    p.add_argument("--only", help="run exactly this stage (e.g. fold1/cpt/L9-K50); what SLURM jobs call")
    p.set_defaults(func=_run)


def _report(args: argparse.Namespace) -> None:
    from fesa_fairseq.pipeline.report import make_report

    report = make_report(Path(args.exp_dir))
    print(report["markdown"])
    print(f"wrote {report['dir']}/report.md, report.json, confusion_*.png")


def _status(args: argparse.Namespace) -> None:
    from fesa_fairseq.pipeline.experiment import load_experiment, parse_grid
    from fesa_fairseq.pipeline.plan import Plan
    from fesa_fairseq.pipeline.status import BROKEN, format_status, stage_states, wait_for

    exp = Path(args.exp_dir).resolve()
    saved = exp / "experiment.yaml"
    if not saved.is_file():
        raise FesaError(f"{exp} holds no experiment.yaml: give the --exp-dir of a fesa run")
    plan = Plan(load_experiment(saved, [], check=False), exp, parse_grid(args.grid))
    states = wait_for(plan, args.interval) if args.wait else stage_states(plan)
    print(format_status(states))
    broken = [s for s in states if s.state in BROKEN]
    if args.wait and broken:
        keys = ", ".join(s.key for s in broken)
        raise StageFailed(f"{len(broken)} stage(s) failed or were cancelled ({keys}); run fesa run again to resubmit them")


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "status",
        help="where an experiment stands: every fold and stage complete, running, pending, failed, cancelled or to do",
        description="Reads the stage stamps and locks of EXP_DIR and, for fesa run --slurm, its jobs (EXP_DIR/slurm/jobs.json) "
        "through squeue and sacct (or scontrol). A failed or cancelled stage names its job and log; fesa run again "
        "resubmits exactly the stages that are neither complete nor queued.",
    )
    p.add_argument("exp_dir", help="an experiment folder of fesa run")
    p.add_argument("--grid", nargs="+", metavar="NAME=V1,V2", help="the grid the run was given (fesa run --grid), if any")
    p.add_argument("--wait", action="store_true", help="wait until nothing is pending or running; exit 1 if a stage failed or was cancelled")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between polls with --wait (default 10)")
    p.set_defaults(func=_status)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="UA/WA per fold and mean +- std, confusion matrices, the Table 1 grid",
        description="Reads EXP_DIR/fold*/evaluate/*/metrics.json and writes EXP_DIR/report/.",
    )
    p.add_argument("exp_dir", help="an experiment folder of fesa run")
    p.set_defaults(func=_report)


def _predict(args: argparse.Namespace) -> None:
    from fesa_fairseq.inference.eder import read_segments_json
    from fesa_fairseq.inference.predict import collect_inputs, predict_files
    from fesa_fairseq.inference.recognizer import EmotionRecognizer, check_options

    check_options(args.window, args.hop, args.median, args.min_segment)
    inputs = collect_inputs(args.inputs)
    reference = read_segments_json(Path(args.reference), reference=True) if args.reference else None
    recognizer = EmotionRecognizer.from_checkpoint(
        args.checkpoint,
        device=args.device,
        precision=args.precision,
        window=args.window,
        hop=args.hop,
        median=args.median,
        min_segment=args.min_segment,
    )
    s = predict_files(
        recognizer, inputs, Path(args.out), frames=args.frames, plot=args.plot, reference=reference, strict=args.strict, progress=not args.quiet
    )
    for path, why in s["skipped"]:
        print(f"skipped {path}: {why}", file=sys.stderr)
    speed = s["audio_seconds"] / s["seconds"] if s["seconds"] else float("inf")
    print(
        f"{s['files']} files, {s['audio_seconds']:.1f} s of audio in {s['seconds']:.1f} s ({speed:.1f} s of audio per second); "
        f"wrote {args.out}/utterances.tsv, segments.json"
    )
    if s["skipped"]:
        raise FesaError(f"{len(s['skipped'])} of {len(inputs)} inputs could not be read (above); the others were written")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="emotion of any recording: utterance label, per-frame posteriors, segments with timestamps",
        description="Runs a fine-tuned classifier (the checkpoint alone) over audio files (wav, flac, ogg; any rate and "
        "channels: mixed to mono, resampled to 16 kHz), folders (searched recursively) and fairseq .tsv manifests. Long "
        "files go through overlapping windows. Writes OUT/utterances.tsv and OUT/segments.json (the ZED recipe's layout).",
    )
    p.add_argument("checkpoint", help="a hubert_emotion_classifier checkpoint (checkpoint_best.pt of a fine-tuning)")
    p.add_argument("inputs", nargs="+", help="audio files, folders, or .tsv manifests")
    p.add_argument("--out", type=_path, required=True, help="output folder")
    p.add_argument("--frames", action="store_true", help="also write OUT/frames/<utt>.npz: per-frame posteriors and pooling weights")
    p.add_argument("--plot", type=int, default=0, metavar="N", help="timeline pictures of the first N inputs (first 60 s of each)")
    p.add_argument("--reference", help="true segments (fesa convert-segments output), drawn on the timelines")
    _add_precision(p, SCORING_PRECISION)
    p.add_argument("--window", type=float, default=20.0, help="seconds of audio per encoder pass (default 20)")
    p.add_argument("--hop", type=float, default=15.0, help="seconds between window starts (default 15: 5 s of overlap)")
    p.add_argument("--median", type=float, default=0.25, help="median smoothing of the posteriors, seconds (default 0.25)")
    p.add_argument("--min-segment", type=float, default=0.25, help="shortest segment kept, seconds (default 0.25)")
    p.add_argument("--device", type=_device, default="auto", help=DEVICE_HELP)
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable input instead of skipping it")
    p.set_defaults(func=_predict)


def _eder(args: argparse.Namespace) -> None:
    from fesa_fairseq.data.files import atomic_write_json
    from fesa_fairseq.inference.eder import eder, format_confusion_seconds, read_segments_json

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


def _add_eder(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eder",
        help="Emotion Diarization Error Rate of predicted segments against a reference (SpeechBrain's)",
        description="EDER as speechbrain/utils/EDER.py defines it, averaged over the reference's utterances; "
        "several events per reference utterance are allowed (time between them is neutral).",
    )
    p.add_argument("--reference", required=True, help="true segments: {utt: {wav, duration, emotion: [{emo, start, end}]}}")
    p.add_argument("--hypothesis", required=True, help="predicted segments in the same layout (fesa predict's segments.json)")
    p.add_argument("--neutral", default="neu", help="the label of time no reference event covers (default neu)")
    p.add_argument("--first-letter", action="store_true", help="compare labels by first letter, as SpeechBrain's ZED recipe does")
    p.add_argument("--out", type=_path, help="also write the figures (per utterance too) to this json")
    p.set_defaults(func=_eder)


def _convert_segments(args: argparse.Namespace) -> None:
    from fesa_fairseq.inference.references import convert_references, write_references

    data = convert_references(
        Path(args.source), args.format, Path(args.manifest) if args.manifest else None, Path(args.audio_root) if args.audio_root else None
    )
    write_references(data, Path(args.out))
    print(f"{len(data)} utterances, {sum(len(d['emotion']) for d in data.values())} events: wrote {args.out}")


def _add_convert_segments(sub: argparse._SubParsersAction) -> None:
    from fesa_fairseq.inference.references import FORMATS

    p = sub.add_parser("convert-segments", help="true emotion segments (ZED json, the demo corpus, a plain tsv) -> fesa eder's layout")
    p.add_argument("source", help="ZED's annotation json, a demo corpus (or its fesa_demo_segments.tsv), or a tsv of utt_id start end emotion")
    p.add_argument("--out", type=_path, required=True, help="the reference json to write")
    p.add_argument("--format", choices=FORMATS, default="auto", help="default: from the file's name")
    p.add_argument("--manifest", help="tsv format: a fairseq manifest giving each utterance's wav and duration")
    p.add_argument("--audio-root", help="tsv format: wavs found under this folder by name; zed: replaces {data_root}")
    p.set_defaults(func=_convert_segments)


def _export(args: argparse.Namespace) -> None:
    try:
        from fesa_fairseq.inference.onnx_export import export_onnx
    except ImportError as e:
        raise FesaError(f"fesa export needs the [export] extra ({e.name} is missing): pip install 'fesa_fairseq[export]' (make install does)") from e
    if not args.onnx.endswith(".onnx"):
        raise FesaError(f"--onnx {args.onnx}: give a file name ending in .onnx")
    r = export_onnx(args.checkpoint, Path(args.onnx), int8=args.int8)
    print(f"classes {r['labels']}; checked on {len(r['lengths'])} lengths ({', '.join(str(n) for n in r['lengths'])} samples):")
    print(f"  fp32: max |logit difference| vs PyTorch {r['max_logit_difference']:.2g}, same label {r['same_label']}")
    if "int8" in r:
        print(f"  int8: max |logit difference| vs PyTorch {r['int8']['max_logit_difference']:.2g}, same label {r['int8']['same_label']}")
    print(f"wrote {', '.join(r['files'].values())}")


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="a fine-tuned classifier as an ONNX file (dynamic length): logits, frame posteriors, pooling weights",
        description="Exports the classifier (encoder, pooling, output layer) with torch.onnx (dynamo), checks the file "
        "with onnxruntime against PyTorch on inputs of several lengths (max |logit difference| <= 1e-3, else nothing "
        "is written) and stores the class names in its metadata. Needs the [export] extra (onnx, onnxruntime, onnxscript).",
    )
    p.add_argument("checkpoint", help="a hubert_emotion_classifier checkpoint (checkpoint_best.pt of a fine-tuning)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the file to write")
    p.add_argument("--int8", action="store_true", help="also write OUT.int8.onnx: onnxruntime's dynamic int8 quantisation")
    p.set_defaults(func=_export)


SUBCOMMANDS: List[Callable[[argparse._SubParsersAction], None]] = [
    _add_prepare_iemocap,
    _add_make_demo_corpus,
    _add_make_pretraining_corpus,
    _add_evaluate,
    _add_reference,
    _add_pseudo_labels,
    _add_analyze_clusters,
    _add_run,
    _add_report,
    _add_status,
    _add_predict,
    _add_eder,
    _add_convert_segments,
    _add_export,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fesa", description="Frame-level emotional state alignment on fairseq HuBERT.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not only its one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # fesa run CONFIG --exp-dir X key=value: argparse cannot take positionals after options with subcommands.
    if extra and not (args.command == "run" and all("=" in e and not e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
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
        return _fail(args, e, str(e), e.exit_code)
    except OSError as e:  # permission denied, a file where a folder belongs, a full disk: the user's to fix
        where = f"{e.filename}: " if e.filename else ""
        return _fail(args, e, f"{where}{e.strerror or e}", 2)
    return 0


def _fail(args: argparse.Namespace, error: Exception, message: str, code: int) -> int:
    """One line (exit 2: bad input; 1: a stage failed); --debug adds the traceback."""
    if args.debug:
        import traceback

        traceback.print_exception(error)
    print(f"fesa {args.command}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
