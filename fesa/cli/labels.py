"""Frame labels: pseudo-labels (features -> k-means -> {split}.km) and analyze-clusters (the layer x K grid)."""

import argparse
from pathlib import Path

from fesa.cli.common import Subparsers, add_device, add_neutral, add_options, add_out, add_overwrite, add_own_out, ints, values
from fesa.errors import FesaError
from fesa.options import (
    ALIGNMENT_FILE,
    ANALYSIS_FILE,
    CONTROL_LABEL_KINDS,
    FEATURES_DIR,
    GRID_SKLEARN_N_INIT,
    KMEANS_MODEL,
    LABELS_INFO,
    AlignmentOptions,
    ClusterGridOptions,
    ControlLabelOptions,
    KMeansOptions,
    PseudoLabelOptions,
    ScoringOptions,
)

PSEUDO_LABEL_KMEANS = ("backend", "batch_size", "n_init", "max_iter")
CLUSTER_GRID_KMEANS = ("backend", "n_init")
PSEUDO_LABEL_FIELDS = ("layer", "clusters", "percent", "seed", "precision", "max_chunk")
CLUSTER_GRID_FIELDS = ("max_utterances", "seed", "precision")
ALIGNMENT_FIELDS = ("clusters", "max_utterances", "seed", "precision")


def add_parsers(sub: Subparsers) -> None:
    _add_pseudo_labels(sub)
    _add_control_labels(sub)
    _add_analyze_clusters(sub)
    _add_alignment(sub)


def _control_labels(args: argparse.Namespace) -> None:
    from fesa.labels.control_labels import make_control_labels

    info = make_control_labels(Path(args.labels_dir), Path(args.manifest_dir), Path(args.out), args.kind, args.seed, args.overwrite)
    print(f"wrote {info['kind']} labels of {args.labels_dir} to {args.out}: " + ", ".join(f"{s} {n} lines" for s, n in info["splits"].items()))


def _add_control_labels(sub: Subparsers) -> None:
    p = sub.add_parser(
        "control-labels",
        help="control targets for continued pretraining, from pseudo-labels: utterance emotion on every frame, or shuffled",
        description="Reads LABELS_DIR/{train,valid}.km (fesa pseudo-labels) and writes OUT/{train,valid}.km, dict.km.txt and "
        "labels.json with the same line lengths. utterance: every frame labelled with its utterance's class (from "
        "MANIFEST_DIR/{split}.emo); shuffled: each utterance given another utterance's cluster sequence of the same split, "
        "cut or tiled to its length. CPT on these, trained exactly as on the clusters, tells what the clusters add.",
    )
    p.add_argument("labels_dir", help="a fesa pseudo-labels folder of the fold")
    p.add_argument("--kind", required=True, choices=CONTROL_LABEL_KINDS, help="which control")
    p.add_argument("--manifest-dir", required=True, help="the fold folder (dict.emo.txt, {train,valid}.emo)")
    add_out(p, "folder to write")
    add_options(p, ControlLabelOptions, ["seed"])
    add_overwrite(p, "replace labels this command wrote at OUT (swapped in whole)")
    p.set_defaults(func=_control_labels)


def _pseudo_labels(args: argparse.Namespace) -> None:
    from fesa.labels.pseudo_labels import PseudoLabelJob, make_pseudo_labels

    options = PseudoLabelOptions(**values(args, PSEUDO_LABEL_FIELDS)).check()  # before any model is loaded
    reader, describe, batch_samples = _feature_reader(args, options)
    job = PseudoLabelJob(
        manifest_dir=args.manifest_dir,
        splits=[s for s in args.splits.split(",") if s],
        out_dir=args.out,
        clusters=options.clusters,
        kmeans_model=args.kmeans_model,
        train_split=args.train_split,
        percent=options.percent,
        nshard=args.nshard,
        rank=args.rank,
        feature_dir=args.feature_dir,
        seed=options.seed,
        kmeans=KMeansOptions(**values(args, PSEUDO_LABEL_KMEANS, prefix="kmeans")),
        describe=describe,
        batch_samples=batch_samples,
    )
    summary = make_pseudo_labels(reader, job)
    if summary is None:
        print(f"dumped features of shard {args.rank}/{args.nshard} to {args.feature_dir}; run again without --rank to cluster")
        return
    print(f"K={summary['clusters']} at {summary['label_rate']:g} Hz; frames per split: {summary['frames']}")
    print(f"wrote {args.out}/{{{','.join(job.splits)}}}.km, dict.km.txt, kmeans.bin, labels.json")


def _feature_reader(args: argparse.Namespace, options: PseudoLabelOptions):
    """The reader of --features, what labels.json records of it, and the padded samples of one feature pass."""
    from fesa.devices import precision_name, resolve_batch_seconds, resolve_device
    from fesa.labels.readers import HubertFeatureReader, MfccFeatureReader

    if args.features == "mfcc":
        return MfccFeatureReader(), {"features": "mfcc"}, 0
    if args.checkpoint is None or options.layer is None:
        raise FesaError("--checkpoint and --layer are needed for HuBERT features (or pass --features mfcc)")
    ScoringOptions(batch_seconds=args.batch_seconds).check()
    device = resolve_device(args.device)
    reader = HubertFeatureReader(args.checkpoint, options.layer, device, options.max_chunk, data_dir=args.manifest_dir, precision=options.precision)
    describe = {
        "features": "hubert",
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "layer": options.layer,
        "precision": precision_name(reader.precision),
    }
    return reader, describe, int(resolve_batch_seconds(args.batch_seconds, device) * reader.sample_rate)


def _add_pseudo_labels(sub: Subparsers) -> None:
    p = sub.add_parser(
        "pseudo-labels",
        help="frame features of a model layer (or MFCC) -> k-means on the training split -> {split}.km labels",
        description="Dumps frame features with fairseq's simple_kmeans (streamed to disk, sharded), learns "
        "k-means on the training split only (faiss by default, or fairseq's MiniBatchKMeans recipe: --kmeans-backend "
        "sklearn; or applies --kmeans-model), labels every split, and checks "
        "every label line against the utterance's frame count.",
    )
    p.add_argument("--manifest-dir", required=True, help="folder with {split}.tsv (a fold folder)")
    p.add_argument("--splits", default="train,valid,test", help="comma-separated splits to label (default train,valid,test)")
    add_own_out(p, "folder for {split}.km, dict.km.txt, kmeans.bin, labels.json", (LABELS_INFO, KMEANS_MODEL, FEATURES_DIR))
    p.add_argument("--features", choices=["hubert", "mfcc"], default="hubert", help="hubert (a checkpoint's layer) or mfcc (bootstrap, 100 Hz)")
    p.add_argument("--checkpoint", help="HuBERT-family checkpoint: pretraining, official release, or fine-tuned classifier")
    p.add_argument("--kmeans-model", help="apply this fitted k-means (e.g. hubert_base_ls960_L9_km500.bin) instead of learning one")
    p.add_argument("--train-split", default="train", help="the only split k-means is fitted on (default train)")
    p.add_argument("--nshard", type=int, default=1, help="split each manifest into this many feature shards")
    p.add_argument("--rank", type=int, help="only dump the features of this shard, then stop (for parallel jobs; needs --feature-dir)")
    p.add_argument("--feature-dir", help="keep features here (reused when complete); default: a temporary folder in --out")
    add_device(p)
    add_options(p, PseudoLabelOptions, PSEUDO_LABEL_FIELDS)
    add_options(p, ScoringOptions, ["batch_seconds"])
    add_options(p, KMeansOptions, PSEUDO_LABEL_KMEANS, prefix="kmeans")
    p.set_defaults(func=_pseudo_labels)


def _analyze_clusters(args: argparse.Namespace) -> None:
    from fesa.devices import resolve_device
    from fesa.labels.analyze_clusters import analyze_clusters, format_table
    from fesa.labels.readers import HubertFeatureReader

    options = ClusterGridOptions(**values(args, CLUSTER_GRID_FIELDS)).check()
    layers = ints(args.layers, "--layers")
    device = resolve_device(args.device)
    reader = HubertFeatureReader(args.checkpoint, max(layers), device, data_dir=args.manifest_dir, precision=options.precision)
    result = analyze_clusters(
        reader,
        args.manifest_dir,
        layers,
        ints(args.clusters, "--clusters"),
        args.out,
        max_utterances=options.max_utterances,
        seed=options.seed,
        kmeans=KMeansOptions(**values(args, CLUSTER_GRID_KMEANS, prefix="kmeans")),
        progress=not args.quiet,
    )
    print(format_table(result))
    print(f"wrote {args.out}/analysis.md, analysis.json, clusters.png")


def _add_analyze_clusters(sub: Subparsers) -> None:
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
    add_own_out(p, "folder for analysis.md, analysis.json and clusters.png", (ANALYSIS_FILE,))
    add_device(p)
    add_options(p, ClusterGridOptions, CLUSTER_GRID_FIELDS)
    grid_help = {"n_init": f"restarts per cell (sklearn: default {GRID_SKLEARN_N_INIT} here; faiss: default 1)"}
    add_options(p, KMeansOptions, CLUSTER_GRID_KMEANS, prefix="kmeans", helps=grid_help)
    p.set_defaults(func=_analyze_clusters)


def _alignment(args: argparse.Namespace) -> None:
    from fesa.devices import resolve_device
    from fesa.inference.references import segment_truth
    from fesa.labels.alignment import format_alignment, measure_alignment, write_alignment
    from fesa.labels.readers import HubertFeatureReader

    options = AlignmentOptions(**values(args, ALIGNMENT_FIELDS)).check()  # before the model is loaded
    truth = segment_truth(args.reference, Path(args.fold_dir))
    device = resolve_device(args.device)
    reader = HubertFeatureReader(args.checkpoint, args.layer, device, data_dir=args.fold_dir, precision=options.precision)
    kmeans = KMeansOptions(**values(args, CLUSTER_GRID_KMEANS, prefix="kmeans"))
    result = measure_alignment(
        reader, Path(args.fold_dir), truth, options.clusters, args.neutral, options.max_utterances, options.seed, kmeans, not args.quiet
    )
    write_alignment(result, Path(args.out))
    print("\n".join(format_alignment(result)))
    print(f"wrote {args.out}/alignment.json")


def _add_alignment(sub: Subparsers) -> None:
    p = sub.add_parser(
        "alignment",
        help="how a model's frames line up with each frame's true emotional state: cluster purity, NMI, linear probe",
        description="Each frame's true state is the class of the emotional segment covering it, else neutral. At LAYER of "
        "CHECKPOINT: k-means (K clusters) fitted on training-split frames and a linear probe trained on them, both "
        "scored on test-split frames (purity, NMI, frame UA). No utterance label is used. Truth: --reference.",
    )
    p.add_argument("checkpoint", help="a HuBERT-family checkpoint (source, TAPT, CPT, or a fine-tuned classifier)")
    p.add_argument("fold_dir", help="fold folder with {train,test}.{tsv,emo} and dict.emo.txt")
    p.add_argument("--layer", type=int, required=True, help="transformer layer (1 = first), as fesa pseudo-labels counts")
    p.add_argument(
        "--reference",
        required=True,
        help="true segments: fesa eder's json (fesa convert-segments) or utt_id start end emotion lines (a demo corpus's fesa_demo_segments.tsv)",
    )
    add_neutral(p)
    add_own_out(p, "folder for alignment.json", (ALIGNMENT_FILE,))
    add_device(p)
    add_options(p, AlignmentOptions, ALIGNMENT_FIELDS)
    add_options(p, KMeansOptions, CLUSTER_GRID_KMEANS, prefix="kmeans")
    p.set_defaults(func=_alignment)
