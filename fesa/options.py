"""The options of the components, each default and its help written once.

The components (``fesa_fairseq``) take their defaults from these dataclasses, and the command line builds its
flags from the same fields (``fesa.cli.common.add_options``), so a default never drifts between a help text and
the code. This module imports neither torch nor fairseq.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Optional

from fesa.errors import FesaError

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


def check_device_name(device: str, where: str = "--device") -> str:
    """One of DEVICE_HELP's spellings, checked before anything runs (whether the machine has it is checked later)."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise FesaError(f"{where} {device!r} is not a device: give {DEVICE_HELP}")
    return device


def _help(text: str) -> dict:
    return {"help": text}


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

    def resolved(self) -> "KMeansOptions":
        if self.backend not in KMEANS_BACKENDS:
            raise FesaError(f"k-means backend {self.backend!r}: choose {' or '.join(KMEANS_BACKENDS)}")
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
