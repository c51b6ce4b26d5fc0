"""The options of the commands, each default, its help and its check written once.

The components take their defaults from these dataclasses, the command line builds its flags from the same fields
(``fesa.cli.common.add_options``) and the experiment (``fesa.pipeline.experiment``) its keys' defaults and checks,
so a default never drifts between a help text, the Python API and ``fesa run``. This module imports neither torch
nor fairseq.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from fesa.errors import FesaError

DEVICE = "auto"  # every command's --device, the experiment's device: and the Python API's device
DEVICE_HELP = "auto (CUDA when available), cpu, cuda or cuda:N"
_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
PRECISION_HELP = (
    "auto (bf16 on a CPU with bf16 instructions or a GPU that has them, else fp16 on CUDA, else fp32), "
    "fp32, bf16 (autocast), or fp16 (autocast, CUDA only)"
)
# Measured (README: Precision). Label dumps: bf16 labels agree with fp32's on >= 0.999 of frames and dump 1.75x
# faster (benchmarks/precision.py), so auto. Scoring: bf16 moved a demo fold's test UA by 2.5 points and gave the
# tiny model no speed (benchmarks/export.py), so fp32 unless asked.
LABEL_DUMP_PRECISION = "auto"
SCORING_PRECISION = "fp32"

# Seconds of audio per encoder pass (fesa predict, fesa evaluate, fesa pseudo-labels' dump; padding counted), per
# device type. CPU: 0, one at a time, today's path: HuBERT base's transformer was no faster in padded batches on 2
# cores (README: Precision); the tiny model was 1.8-2.7x faster batched (benchmarks/predict.py --batch-seconds) but
# base size is not yet measured with this code. CUDA: one at a time leaves the GPU waiting on launches; 160 s
# (8 windows of 20 s) fills it while HuBERT base's first convolution (512 channels at 3.2 kHz) stays near 1 GB in fp32.
SCORING_BATCH_SECONDS = {"cpu": 0.0, "cuda": 160.0}
BATCH_SECONDS_HELP = (
    "seconds of audio scored in one encoder pass: several windows or utterances, sorted by length, each scored as it "
    "would be alone; 0: one at a time (default per device: "
    + ", ".join(f"{device} {seconds:g}" for device, seconds in SCORING_BATCH_SECONDS.items())
    + ")"
)

NEUTRAL = "neu"  # the label of time no reference segment covers (EDER, attention focus)
MAX_CHUNK = 1_600_000  # samples (100 s at 16 kHz) fed to the model at once when dumping features

KMEANS_BACKENDS = ("faiss", "sklearn")
# Per backend, the settings its KMeansOptions leaves None: fairseq's recipe (sklearn) and faiss' own.
KMEANS_DEFAULTS = {"sklearn": {"max_iter": 100, "n_init": 20}, "faiss": {"max_iter": 25, "n_init": 1}}
GRID_SKLEARN_N_INIT = 3  # fesa analyze-clusters: a grid of cells, fewer sklearn restarts than the recipe's 20
# What continued pretraining predicts: the method's frame clusters, or a control trained the same way (README:
# Controls): the utterance's emotion on every frame, the clusters shuffled between utterances, the TAPT stage's units.
CPT_TARGETS = ("clusters", "utterance", "shuffled", "tapt")
CONTROL_LABEL_KINDS = ("utterance", "shuffled")
SEGMENT_FORMATS = ("auto", "zed", "demo", "tsv")  # fesa convert-segments: where true emotion segments come from

# The file each command writes last into its --out folder: a folder holding it is the command's own, which a rerun
# may write into without --overwrite (fesa.files.check_own_dir).
METRICS_FILE = "metrics.json"  # fesa evaluate, fesa acoustic-baseline
LABELS_INFO = "labels.json"  # fesa pseudo-labels, fesa control-labels
POOL_INFO = "pool.json"  # fesa pool-audio
ALIGNMENT_FILE = "alignment.json"  # fesa alignment
ANALYSIS_FILE = "analysis.json"  # fesa analyze-clusters
SEGMENTS_FILE = "segments.json"  # fesa predict
KMEANS_MODEL = "kmeans.bin"  # fesa pseudo-labels, before labels.json
FEATURES_DIR = ".features"  # fesa pseudo-labels' feature shards in --out (resumed; removed at the end)


def check_device_name(device: str, where: str = "--device") -> str:
    """One of DEVICE_HELP's spellings, checked before anything runs (whether the machine has it is checked later)."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise FesaError(f"{where} {device!r} is not a device: give {DEVICE_HELP}")
    return device


def _help(text: str) -> dict:
    return {"help": text}


def flag(name: str) -> str:
    """How the command line spells an options field: min_segment -> --min-segment."""
    return "--" + name.replace("_", "-")


def check_clusters(k: int, where: str) -> None:
    if k < 2:
        raise FesaError(f"{where} is {k}; k-means needs K >= 2 clusters")


def check_percent(percent: float, where: str) -> None:
    if not (percent == -1 or 0 < percent <= 1):
        raise FesaError(f"{where} is {percent}; give a share in (0, 1], or -1 for all utterances")


def check_layer(layer: int, where: str, depth: Optional[int] = None, whose: str = "") -> None:
    """Layers are counted from 1 (fairseq's output_layer); ``depth``, where known, is the model's (``whose``)."""
    if layer < 1 or (depth is not None and layer > depth):
        span = f"1..{depth}: {whose} has {depth} transformer layers" if depth is not None else "1 or more"
        raise FesaError(f"{where} is {layer}; layers are counted from 1, give {span}")


def check_seed(seed: int, where: str) -> None:
    if not 0 <= seed < 2**32:  # numpy's and scikit-learn's range
        raise FesaError(f"{where} is {seed}; give a whole number from 0 to {2**32 - 1}")


def check_precision(precision: str, where: str = "--precision") -> None:
    if precision not in PRECISIONS:
        raise FesaError(f"{where} is {precision!r}; choose one of {', '.join(PRECISIONS)}")


def check_batch_seconds(seconds: float, where: str = "--batch-seconds") -> None:
    if not (isinstance(seconds, (int, float)) and 0 <= seconds < math.inf):
        raise FesaError(f"{where} is {seconds}; give a number of seconds, 0 or more (0: one at a time)")


def check_count(value: int, where: str, what: str) -> None:
    if value < 1:
        raise FesaError(f"{where} is {value}; give 1 or more {what}")


@dataclass
class PseudoLabelOptions:
    """fesa pseudo-labels: frames of a model layer, k-means, labels. The experiment's tapt_labels and emotion_labels
    blocks take their defaults and checks from here, as their stages run this command."""

    layer: Optional[int] = field(default=None, metadata=_help("transformer layer whose output is clustered (1 = first; 9 is the paper's best)"))
    clusters: Optional[int] = field(default=None, metadata=_help("K (50 is the paper's best; 100, 150 tried)"))
    percent: float = field(default=-1.0, metadata=_help("fit k-means on this share of training utterances; -1 for all"))
    seed: int = field(default=0, metadata=_help("seed of k-means and of its --percent sample"))
    precision: str = field(default=LABEL_DUMP_PRECISION, metadata=_help(f"of the feature dump: {PRECISION_HELP}; README: Precision"))
    max_chunk: int = field(default=MAX_CHUNK, metadata=_help("longest piece of audio fed to the model at once, in samples"))

    CHOICES = {"precision": PRECISIONS}

    def check(self, where: Callable[[str], str] = flag) -> "PseudoLabelOptions":
        """``where(field)`` names a field in messages: its flag, or the experiment's key."""
        if self.layer is not None:
            check_layer(self.layer, where("layer"))
        if self.clusters is not None:
            check_clusters(self.clusters, where("clusters"))
        check_percent(self.percent, where("percent"))
        check_seed(self.seed, where("seed"))
        check_precision(self.precision, where("precision"))
        check_count(self.max_chunk, where("max_chunk"), "samples")
        return self


@dataclass
class ClusterGridOptions:
    """fesa analyze-clusters: the layer x K grid of k-means on a sample of utterances."""

    max_utterances: int = field(default=300, metadata=_help("utterances sampled per split"))
    seed: int = field(default=0, metadata=_help("seed of the utterance sample and of k-means"))
    precision: str = field(default=LABEL_DUMP_PRECISION, metadata=_help(f"{PRECISION_HELP}; README: Precision"))

    CHOICES = {"precision": PRECISIONS}

    def check(self, where: Callable[[str], str] = flag) -> "ClusterGridOptions":
        check_count(self.max_utterances, where("max_utterances"), "utterances sampled per split")
        check_seed(self.seed, where("seed"))
        check_precision(self.precision, where("precision"))
        return self


@dataclass
class AlignmentOptions:
    """fesa alignment: k-means and a linear probe of one layer's frames against their true states."""

    clusters: int = field(default=50, metadata=_help("K of the k-means scored"))
    max_utterances: int = field(default=400, metadata=_help("utterances sampled per split"))
    seed: int = field(default=0, metadata=_help("seed of the sample, k-means and the probe"))
    precision: str = field(default=LABEL_DUMP_PRECISION, metadata=_help(f"{PRECISION_HELP}; README: Precision"))

    CHOICES = {"precision": PRECISIONS}

    def check(self, where: Callable[[str], str] = flag) -> "AlignmentOptions":
        check_clusters(self.clusters, where("clusters"))
        check_count(self.max_utterances, where("max_utterances"), "utterances sampled per split")
        check_seed(self.seed, where("seed"))
        check_precision(self.precision, where("precision"))
        return self


@dataclass
class ControlLabelOptions:
    """fesa control-labels: the controls of continued pretraining, made from pseudo-labels."""

    seed: int = field(default=0, metadata=_help("seed of the shuffle"))

    def check(self, where: Callable[[str], str] = flag) -> "ControlLabelOptions":
        check_seed(self.seed, where("seed"))
        return self


@dataclass
class BaselineOptions:
    """fesa acoustic-baseline: MFCC statistics and a logistic regression."""

    seed: int = field(default=0, metadata=_help("seed of the logistic regression"))

    def check(self, where: Callable[[str], str] = flag) -> "BaselineOptions":
        check_seed(self.seed, where("seed"))
        return self


@dataclass
class ScoringOptions:
    """fesa evaluate and fesa predict: how the one scorer (inference.recognizer) runs the classifier."""

    precision: str = field(default=SCORING_PRECISION, metadata=_help(f"{PRECISION_HELP}; README: Precision"))
    batch_seconds: Optional[float] = field(default=None, metadata=_help(BATCH_SECONDS_HELP))

    CHOICES = {"precision": PRECISIONS}

    def check(self, where: Callable[[str], str] = flag) -> "ScoringOptions":
        check_precision(self.precision, where("precision"))
        if self.batch_seconds is not None:
            check_batch_seconds(self.batch_seconds, where("batch_seconds"))
        return self


@dataclass
class FrameOptions:
    """How fesa predict (and the recognizer) turns a recording into frame posteriors and emotion segments."""

    window: float = field(default=20.0, metadata=_help("seconds of audio per encoder pass"))
    hop: float = field(default=15.0, metadata=_help("seconds between window starts (15 with a 20 s window: 5 s of overlap)"))
    median: float = field(default=0.25, metadata=_help("median smoothing of the posteriors, seconds"))
    min_segment: float = field(default=0.25, metadata=_help("shortest segment kept, seconds"))

    # (smallest, largest) in seconds. A window must hold a few frames; past the largest, attention's memory
    # (quadratic in the window) exceeds any GPU; smoothing and a shortest segment beyond theirs erase every segment.
    BOUNDS = {"window": (0.1, 600.0), "hop": (0.02, 600.0), "median": (0.0, 10.0), "min_segment": (0.0, 60.0)}

    def check(self, receptive_field: float = 0.025) -> "FrameOptions":
        """Each finite and within BOUNDS; hop shorter than window by the encoder's ``receptive_field`` (seconds),
        so that windows overlap. ``window`` None: every recording in one pass (hop unused)."""
        for name, (low, high) in self.BOUNDS.items():
            value = getattr(self, name)
            if name == "window" and value is None:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and low <= value <= high):
                raise FesaError(f"--{name.replace('_', '-')} {value}: give a number of seconds from {low:g} to {high:g}")
        if self.window is not None and self.hop > self.window - receptive_field:
            raise FesaError(
                f"--hop {self.hop} s must be shorter than --window {self.window} s by {receptive_field:g} s at least, so that windows overlap"
            )
        return self


@dataclass
class HoldoutOptions:
    """How a corpus preparation holds part of each fold's training sessions out for validation."""

    valid_fraction: float = field(default=0.1, metadata=_help("share of each label held out of the training sessions for validation"))
    seed: int = field(default=1, metadata=_help("seed of the validation holdout"))
    validation: str = field(
        default="utterances",
        metadata=_help(
            "what the holdout draws: utterances (shares speakers with train), or speakers: whole speakers of the training "
            "sessions, about valid_fraction of their utterances, class-stratified as far as whole speakers allow"
        ),
    )

    CHOICES = {"validation": ("utterances", "speakers")}


HOLDOUT = HoldoutOptions()


@dataclass
class KMeansOptions:
    """k-means settings. backend faiss (default) or sklearn (fairseq's recipe: k-means++, batch 10,000); max_iter and
    n_init left None take the backend's defaults (KMEANS_DEFAULTS: sklearn 100 and 20, faiss 25 and 1)."""

    backend: str = field(default="faiss", metadata=_help("faiss (fast) or sklearn (fairseq's learn_kmeans itself: MiniBatchKMeans, k-means++)"))
    init: str = field(default="k-means++", metadata=_help("sklearn: initialisation"))
    max_iter: Optional[int] = field(default=None, metadata=_help("iterations (sklearn max_iter, default 100; faiss niter, default 25)"))
    batch_size: int = field(default=10000, metadata=_help("sklearn: MiniBatchKMeans batch size"))
    tol: float = field(default=0.0, metadata=_help("sklearn: tolerance"))
    n_init: Optional[int] = field(default=None, metadata=_help("restarts (sklearn n_init, default 20; faiss nredo, default 1)"))
    reassignment_ratio: float = field(default=0.0, metadata=_help("sklearn: reassignment ratio"))
    max_no_improvement: int = field(default=100, metadata=_help("sklearn: early stop after this many batches without improvement"))

    CHOICES = {"backend": KMEANS_BACKENDS}  # what the command line offers

    def check(self, where: Callable[[str], str] = lambda name: flag(f"kmeans_{name}")) -> "KMeansOptions":
        if self.backend not in KMEANS_BACKENDS:
            raise FesaError(f"{where('backend')} is {self.backend!r}; choose {' or '.join(KMEANS_BACKENDS)}")
        return self

    def resolved(self) -> "KMeansOptions":
        self.check()
        d = KMEANS_DEFAULTS[self.backend]
        max_iter = d["max_iter"] if self.max_iter is None else self.max_iter
        n_init = d["n_init"] if self.n_init is None else self.n_init
        return KMeansOptions(self.backend, self.init, max_iter, self.batch_size, self.tol, n_init, self.reassignment_ratio, self.max_no_improvement)


@dataclass
class SmokeOptions:
    """fesa run --smoke: the budget at which every stage of the user's own experiment runs, to be measured."""

    updates: int = field(default=10, metadata=_help("updates per training stage (one validation and one save, at the last)"))
    kmeans_percent: float = field(default=0.1, metadata=_help("share of training utterances k-means is fitted on (the experiment's, if smaller)"))
    warmup_updates: int = field(default=2, metadata=_help("first updates left out of the steady-state seconds per update (start-up, allocation)"))

    def check(self) -> "SmokeOptions":
        if self.updates < self.warmup_updates + 2:
            raise FesaError(f"--smoke-updates {self.updates}: give {self.warmup_updates + 2} or more, so that steady updates are timed")
        if not 0 < self.kmeans_percent <= 1:
            raise FesaError(f"--smoke-kmeans-percent {self.kmeans_percent}: give a share in (0, 1]")
        return self


@dataclass
class DemoCorpusOptions:
    """fesa make-demo-corpus: the synthetic emotional corpus in IEMOCAP's layout."""

    utterances_per_speaker: int = field(default=30, metadata=_help("turns per speaker, all codes together (30: 300 turns, ~255 kept)"))
    seed: int = field(default=0, metadata=_help("the same seed gives byte-identical files"))


@dataclass
class PretrainingCorpusOptions:
    """fesa make-pretraining-corpus: unlabelled synthetic speakers outside every session of the demo corpus."""

    speakers: int = field(default=12, metadata=_help("speakers, alternately female and male"))
    utterances_per_speaker: int = field(default=40, metadata=_help("utterances per speaker"))
    seed: int = field(default=1000, metadata=_help("the same seed gives byte-identical files"))
