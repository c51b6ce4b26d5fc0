"""How well k-means clusters of each layer's frames agree with utterance emotions: the paper's Table 1 grid
(layer x K) as cluster purity and NMI, from one k-means per cell instead of one full pretraining per cell.

Every frame inherits its utterance's label. k-means (faiss, or fairseq's MiniBatchKMeans settings) is fitted on frames
of a sample of training utterances and scored on the validation split: purity is the share of frames whose
cluster's majority label is their own; NMI is scikit-learn's normalised mutual information. Both are
frame-level; the majority class share is printed as the level that carries no information.
"""

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.metrics import normalized_mutual_info_score
from tqdm import tqdm

from fesa.files import atomic_write_json, atomic_write_text
from fesa.labels.kmeans_backends import assign, fit_with_options
from fesa.options import ANALYSIS_FILE, GRID_SKLEARN_N_INIT, ClusterGridOptions, KMeansOptions, check_clusters, check_layer
from fesa.plots import plot_grid
from fesa_fairseq.data.labels import read_labelled_split

logger = logging.getLogger(__name__)


def purity(clusters: np.ndarray, labels: np.ndarray) -> float:
    """Share of frames that carry the majority label of their cluster."""
    table = np.zeros((clusters.max() + 1, labels.max() + 1), dtype=np.int64)
    np.add.at(table, (clusters, labels), 1)
    return float(table.max(axis=1).sum() / len(labels))


def layer_frames(reader, manifest_dir: Path, split: str, layers: List[int], max_utterances: int, seed: int, progress: bool):
    """Features of `layers` for (a sample of) a split's utterances, and each frame's utterance label index."""
    data = read_labelled_split(manifest_dir, split)
    picked = sorted(np.random.default_rng(seed).permutation(len(data.paths))[:max_utterances])
    feats: Dict[int, List[np.ndarray]] = {layer: [] for layer in layers}
    frame_labels = []
    for i in tqdm(picked, desc=f"features of {split}", unit="utt", disable=not progress):
        out = reader.get_layer_feats(data.paths[i], layers, data.sizes[i])
        for layer in layers:
            feats[layer].append(out[layer].numpy())
        frame_labels.append(np.full(len(out[layers[0]]), data.targets[i]))
    return {layer: np.concatenate(f) for layer, f in feats.items()}, np.concatenate(frame_labels), data.labels


def analyze_clusters(
    reader,
    manifest_dir: str,
    layers: Sequence[int],
    clusters: Sequence[int],
    out_dir: str,
    max_utterances: int = ClusterGridOptions.max_utterances,
    seed: int = ClusterGridOptions.seed,
    kmeans: Optional[KMeansOptions] = None,
    progress: bool = True,
) -> Dict[str, object]:
    ClusterGridOptions(max_utterances, seed).check()
    for layer in layers:
        check_layer(layer, "--layers")
    for k in clusters:
        check_clusters(k, "--clusters")
    manifest_dir, out = Path(manifest_dir), Path(out_dir)
    kmeans = kmeans or KMeansOptions()
    if kmeans.backend == "sklearn" and kmeans.n_init is None:
        kmeans = replace(kmeans, n_init=GRID_SKLEARN_N_INIT)
    layers = sorted(set(layers))
    train, train_labels, classes = layer_frames(reader, manifest_dir, "train", layers, max_utterances, seed, progress)
    valid, valid_labels, _ = layer_frames(reader, manifest_dir, "valid", layers, max_utterances, seed, progress)
    cells = [score_cell(train[layer], valid[layer], valid_labels, layer, k, kmeans.resolved(), seed) for layer in layers for k in clusters]
    result = {
        "manifest_dir": str(manifest_dir),
        "layers": layers,
        "clusters": list(clusters),
        "classes": classes,
        "train_frames": int(len(train_labels)),
        "valid_frames": int(len(valid_labels)),
        "majority_share": float(np.bincount(valid_labels).max() / len(valid_labels)),
        "cells": cells,
    }
    write_analysis(result, out)
    return result


def score_cell(train: np.ndarray, valid: np.ndarray, valid_labels: np.ndarray, layer: int, k: int, opts: KMeansOptions, seed: int) -> Dict:
    """k-means with K = ``k`` on the training frames of ``layer``, scored on the validation frames."""
    start = time.perf_counter()
    km = fit_with_options(train, k, opts, seed)
    assigned = assign(km, valid)
    cell = {
        "layer": layer,
        "clusters": k,
        "purity": purity(assigned, valid_labels),
        "nmi": float(normalized_mutual_info_score(valid_labels, assigned)),
        "seconds": round(time.perf_counter() - start, 2),
    }
    logger.info("layer %d, K=%d: purity %.3f, NMI %.3f", layer, k, cell["purity"], cell["nmi"])
    return cell


def write_analysis(result: Dict[str, object], out: Path) -> None:
    """analysis.md (the table), clusters.png (purity and NMI heat maps), analysis.json."""
    out.mkdir(parents=True, exist_ok=True)
    layers, ks, cells = result["layers"], result["clusters"], result["cells"]
    grids = {metric: np.array([[c[metric] for c in cells if c["layer"] == layer] for layer in layers]) for metric in ("purity", "nmi")}
    title = f"k-means of frames vs utterance emotion (valid, majority share {result['majority_share']:.2f})"
    plot_grid(grids, layers, list(ks), out / "clusters.png", title=title)
    atomic_write_text(out / "analysis.md", format_table(result) + "\n")
    atomic_write_json(out / ANALYSIS_FILE, result)


def format_table(result: Dict[str, object]) -> str:
    ks = result["clusters"]
    lines = ["| layer | " + " | ".join(f"K={k} purity / NMI" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for layer in result["layers"]:
        row = [c for c in result["cells"] if c["layer"] == layer]
        lines.append(f"| {layer} | " + " | ".join(f"{c['purity']:.3f} / {c['nmi']:.3f}" for c in row) + " |")
    lines.append(
        f"\nframe-level, fitted on {result['train_frames']} training frames, scored on {result['valid_frames']} "
        f"validation frames; majority class share {result['majority_share']:.3f}"
    )
    return "\n".join(lines)
