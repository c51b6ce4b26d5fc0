"""Manifests + a feature reader → k-means → frame-level pseudo-labels (``{split}.km``, ``dict.km.txt``).

The three steps are fairseq's own ``simple_kmeans`` functions: ``dump_feature`` streams features to disk
shard by shard (npy-append-array), k-means is fitted on the training split only (optionally on a ``percent``
sample of its utterances) by faiss or by fairseq's ``learn_kmeans`` (kmeans_backends), and ``dump_label``
assigns every frame of every split.
Around them this module adds what a pipeline needs: resumable shards, a refusal to fit on anything but the
training split, checks with clear errors, label lines validated against the frame count of each utterance,
and outputs that appear whole (``labels.json`` last) or not at all.
"""

import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import joblib
import numpy as np
from fairseq.examples.hubert.simple_kmeans import dump_km_label, feature_utils, learn_kmeans

from fesa.errors import FesaError
from fesa.files import atomic_write_json, atomic_write_lines
from fesa.labels.kmeans_backends import fit_kmeans_model, model_of_centroids
from fesa.labels.kmeans_io import load_kmeans
from fesa.labels.readers import BatchedFeatures
from fesa.options import FEATURES_DIR, KMEANS_MODEL, LABELS_INFO, KMeansOptions, PseudoLabelOptions, check_clusters, check_percent
from fesa_fairseq.data.files import read_lines, read_manifest

logger = logging.getLogger(__name__)


@dataclass
class PseudoLabelJob:
    manifest_dir: str
    splits: List[str]
    out_dir: str
    clusters: Optional[int] = None  # None when applying an existing k-means model
    kmeans_model: Optional[str] = None
    train_split: str = "train"
    percent: float = PseudoLabelOptions.percent
    nshard: int = 1
    rank: Optional[int] = None  # only dump this shard's features, then stop (parallel jobs)
    feature_dir: Optional[str] = None
    seed: int = PseudoLabelOptions.seed
    kmeans: KMeansOptions = field(default_factory=KMeansOptions)
    describe: Dict[str, object] = field(default_factory=dict)  # the reader's settings, recorded in labels.json
    batch_samples: int = 0  # padded samples per feature pass (HubertFeatureReader only); 0: one utterance at a time


def _shard_paths(feat_dir: Path, split: str, rank: int, nshard: int):
    return feat_dir / f"{split}_{rank}_{nshard}.npy", feat_dir / f"{split}_{rank}_{nshard}.len"


def _shard_complete(feat_dir: Path, split: str, rank: int, nshard: int, expected: int) -> bool:
    npy, lengths = _shard_paths(feat_dir, split, rank, nshard)
    if not (npy.is_file() and lengths.is_file()):
        return False
    lens = [int(x) for x in read_lines(lengths)]
    return len(lens) == expected and np.load(npy, mmap_mode="r").shape[0] == sum(lens)


def dump_features(reader, job: PseudoLabelJob, feat_dir: Path, ranks: Sequence[int]) -> None:
    """fairseq's dump_feature for every (split, shard) not already complete on disk."""
    for split in job.splits:
        tsv = Path(job.manifest_dir) / f"{split}.tsv"
        for rank in ranks:
            generator, num = feature_utils.get_path_iterator(str(tsv), job.nshard, rank)
            if _shard_complete(feat_dir, split, rank, job.nshard, num):
                logger.info("features of %s shard %d/%d already complete in %s", split, rank, job.nshard, feat_dir)
                continue
            logger.info("dumping features of %s shard %d/%d (%d utterances)", split, rank, job.nshard, num)
            batched = BatchedFeatures(reader, list(generator()), job.batch_samples) if job.batch_samples > 0 else reader
            feature_utils.dump_feature(batched, generator, num, split, job.nshard, rank, str(feat_dir))


def _train_frames(feat_dir: Path, job: PseudoLabelJob) -> int:
    return sum(int(x) for r in range(job.nshard) for x in read_lines(_shard_paths(feat_dir, job.train_split, r, job.nshard)[1]))


def fit_kmeans(job: PseudoLabelJob, feat_dir: Path, km_path: Path) -> None:
    """k-means on the training split only (faiss by default; sklearn: fairseq's learn_kmeans itself), written under a
    temporary name, then renamed."""
    frames = _train_frames(feat_dir, job)
    sampled = frames if job.percent < 0 else frames * job.percent
    if job.clusters > sampled:
        raise FesaError(
            f"--clusters {job.clusters} is more than the {int(sampled)} training frames k-means would see "
            f"({frames} in {job.train_split}, --percent {job.percent}); lower --clusters or raise --percent"
        )
    tmp = km_path.with_name(f".{km_path.name}.tmp")
    start = time.perf_counter()
    opts = job.kmeans.resolved()
    if opts.backend == "sklearn":  # fairseq's own function: exact parity with its recipe
        learn_kmeans.learn_kmeans(
            str(feat_dir),
            job.train_split,
            job.nshard,
            str(tmp),
            job.clusters,
            job.seed,
            job.percent,
            opts.init,
            opts.max_iter,
            opts.batch_size,
            opts.tol,
            opts.n_init,
            opts.reassignment_ratio,
            opts.max_no_improvement,
        )
    else:
        np.random.seed(job.seed)  # fairseq's load_feature draws the --percent sample with numpy's global state
        feats = learn_kmeans.load_feature(str(feat_dir), job.train_split, job.nshard, job.seed, job.percent)
        joblib.dump(fit_kmeans_model(feats, job.clusters, "faiss", job.seed, opts.max_iter, opts.n_init), tmp)
    os.replace(tmp, km_path)
    logger.info("k-means (%s, K=%d) on %d training frames took %.1f s", opts.backend, job.clusters, frames, time.perf_counter() - start)


def adopt_kmeans(job: PseudoLabelJob, feat_dir: Path, km_path: Path, centers: np.ndarray) -> None:
    """Use an existing k-means model (e.g. fairseq's hubert_base_ls960_L9_km500.bin) instead of learning one.

    Its centroids, read once by the restricted reader, are saved anew as kmeans.bin: the user's file itself is
    never handed to fairseq's unchecked joblib.load."""
    dim = np.load(_shard_paths(feat_dir, job.splits[0], 0, job.nshard)[0], mmap_mode="r").shape[1]
    if centers.shape[1] != dim:
        raise FesaError(f"--kmeans-model {job.kmeans_model} has {centers.shape[1]}-dimensional centroids but the features have {dim}")
    tmp = km_path.with_name(f".{km_path.name}.tmp")
    joblib.dump(model_of_centroids(centers), tmp)
    os.replace(tmp, km_path)


def merge_and_check(reader, job: PseudoLabelJob, split: str, lab_dir: Path) -> List[str]:
    """Shard label files → one line per utterance, each as long as the frames the model makes of it."""
    manifest = Path(job.manifest_dir) / f"{split}.tsv"
    _, rows = read_manifest(manifest)
    lines = [line for r in range(job.nshard) for line in read_lines(lab_dir / f"{split}_{r}_{job.nshard}.km")]
    if len(lines) != len(rows):
        raise FesaError(f"{len(lines)} label lines for the {len(rows)} utterances of {manifest}")
    for i, ((rel, n), line) in enumerate(zip(rows, lines)):
        got, expected = len(line.split()), reader.frames(n)
        if got != expected:
            raise FesaError(
                f"{split}.km line {i + 1} ({rel}, {n} samples): {got} labels but the model makes {expected} frames; "
                "utterances longer than --max-chunk are cut into chunks that lose frames: raise --max-chunk"
            )
    return lines


def check_job(job: PseudoLabelJob) -> Optional[np.ndarray]:
    """Every check that needs no features; returns the centroids of --kmeans-model (read once, here, before any
    feature is dumped)."""
    for split in job.splits:
        tsv = Path(job.manifest_dir) / f"{split}.tsv"
        if not tsv.is_file():
            raise FesaError(f"missing manifest {tsv} (split {split!r} of --splits)")
    if job.kmeans_model is None:
        if job.clusters is None:
            raise FesaError("--clusters K (at least 2) is needed unless --kmeans-model is given")
        check_clusters(job.clusters, "--clusters")
        if job.train_split not in job.splits:
            raise FesaError(f"k-means is learned on the {job.train_split!r} split only: include it in --splits")
    check_percent(job.percent, "--percent")
    if job.rank is not None and not 0 <= job.rank < job.nshard:
        raise FesaError(f"--rank {job.rank} must be in 0..{job.nshard - 1}")
    if job.kmeans_model is None:
        return None
    centers = load_kmeans(job.kmeans_model).cluster_centers_
    if job.clusters is not None and job.clusters != len(centers):
        raise FesaError(f"--clusters {job.clusters} but --kmeans-model {job.kmeans_model} has {len(centers)} clusters")
    job.clusters = len(centers)
    return centers


def label_splits(reader, job: PseudoLabelJob, feat_dir: Path, km_path: Path):
    """fairseq's dump_label on every split and shard, merged and checked; and the clusters' frame counts (of the
    training split, or of every split for an applied k-means model)."""
    lab_dir = feat_dir / "labels"
    counts = np.zeros(job.clusters, dtype=np.int64)
    merged = {}
    for split in job.splits:
        for rank in range(job.nshard):
            dump_km_label.dump_label(str(feat_dir), split, str(km_path), job.nshard, rank, str(lab_dir))
        merged[split] = merge_and_check(reader, job, split, lab_dir)
        if split == job.train_split or job.kmeans_model:
            for line in merged[split]:
                counts += np.bincount(np.array(line.split(), dtype=np.int64), minlength=job.clusters)
    return merged, counts


def make_pseudo_labels(reader, job: PseudoLabelJob) -> Dict[str, object]:
    """Run the whole job; returns the summary also written to OUT_DIR/labels.json (None when only dumping a shard)."""
    centers = check_job(job)
    out = Path(job.out_dir)
    keep = job.feature_dir is not None
    feat_dir = Path(job.feature_dir) if keep else out / FEATURES_DIR
    start = time.perf_counter()
    if job.rank is not None:
        dump_features(reader, job, feat_dir, [job.rank])
        return None
    dump_features(reader, job, feat_dir, range(job.nshard))
    dump_seconds = time.perf_counter() - start
    km_path = out / KMEANS_MODEL
    out.mkdir(parents=True, exist_ok=True)
    if centers is not None:
        adopt_kmeans(job, feat_dir, km_path, centers)
    else:
        fit_kmeans(job, feat_dir, km_path)
    kmeans_seconds = time.perf_counter() - start - dump_seconds
    merged, counts = label_splits(reader, job, feat_dir, km_path)
    for split, lines in merged.items():
        atomic_write_lines(out / f"{split}.km", lines)
    atomic_write_lines(out / "dict.km.txt", [f"{k} {c}" for k, c in enumerate(counts)])
    summary = {
        "kind": "clusters",  # what CPT learns to predict (fesa control-labels writes its controls' kinds)
        **job.describe,
        "clusters": job.clusters,
        "label_rate": reader.label_rate,
        "splits": {s: len(lines) for s, lines in merged.items()},
        "frames": {s: sum(len(line.split()) for line in lines) for s, lines in merged.items()},
        "kmeans_fitted_on": job.train_split if not job.kmeans_model else None,
        "kmeans_model": job.kmeans_model,
        "percent": job.percent,
        "seed": job.seed,
        "kmeans": asdict(job.kmeans.resolved()) if not job.kmeans_model else None,
        "feature_seconds": round(dump_seconds, 2),
        "kmeans_seconds": round(kmeans_seconds, 2),
        "label_seconds": round(time.perf_counter() - start - dump_seconds - kmeans_seconds, 2),
        "total_seconds": round(time.perf_counter() - start, 2),
    }
    atomic_write_json(out / LABELS_INFO, summary)
    if not keep:
        shutil.rmtree(feat_dir)
    return summary
