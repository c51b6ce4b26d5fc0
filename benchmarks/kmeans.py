"""k-means backends side by side: faiss against fairseq's learn_kmeans (scikit-learn MiniBatchKMeans, the recipe's
settings: k-means++, batch 10,000, n_init 20, max_iter 100), on the same features, in one run.

1. The demo corpus's training frames at HuBERT-base width: layer 9 of a randomly initialised HuBERT base, dumped by
   `fesa pseudo-labels --feature-dir` (its features are what fesa's label stages cluster), K = 50 (--clusters).
2. A synthetic 1,000,000 x 768 set (500 Gaussian clusters), K = 500: faiss on all of it; sklearn on a --percent
   share of it (the whole would take hours), as `fesa pseudo-labels --percent` would.

Inertia (sum of squared distances to the nearest centroid) is computed the same way for both, on all frames.

    .venv/bin/python benchmarks/kmeans.py [--fold demo_out/exp/manifests/fold1] [--synthetic 1000000] [--sklearn-percent 0.02] [--small]
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fairseq.examples.hubert.simple_kmeans.learn_kmeans import load_feature

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
from fesa.labels.kmeans_backends import fit_kmeans_model, inertia  # noqa: E402

from common import parse_args, random_hubert  # noqa: E402

SMALL = dict(model="tiny", layer=2, clusters=8, synthetic=2000, synthetic_clusters=10, sklearn_percent=0.5)  # --small


def timed(feats: np.ndarray, k: int, backend: str):
    start = time.perf_counter()
    model = fit_kmeans_model(feats, k, backend, seed=0)
    return model, time.perf_counter() - start


def compare(name: str, everything: np.ndarray, k: int, sklearn_feats: np.ndarray) -> None:
    faiss_model, faiss_s = timed(everything, k, "faiss")
    sk_model, sk_s = timed(sklearn_feats, k, "sklearn")
    fi, si = inertia(faiss_model, everything), inertia(sk_model, everything)
    share = "" if len(sklearn_feats) == len(everything) else f" (sklearn fitted on {len(sklearn_feats):,} of them)"
    print(f"\n{name}: {everything.shape[0]:,} x {everything.shape[1]}, K = {k}{share}")
    print(f"  {'backend':<34s} {'seconds':>9s} {'inertia':>14s}")
    print(f"  {'fairseq learn_kmeans (sklearn)':<34s} {sk_s:9.1f} {si:14.4g}")
    print(f"  {'faiss':<34s} {faiss_s:9.1f} {fi:14.4g}")
    print(f"  faiss is {sk_s / faiss_s:.1f}x faster; its inertia is {100 * (fi / si - 1):+.2f}% of sklearn's")


def demo_features(fold: Path, work: Path, model: str, layer: int, clusters: int) -> np.ndarray:
    ckpt = random_hubert(work / "hubert.pt", model)
    cmd = [
        sys.executable,
        "-m",
        "fesa.cli",
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        str(fold),
        "--splits",
        "train",
        "--checkpoint",
        str(ckpt),
        "--layer",
        str(layer),
        "--clusters",
        str(clusters),
        "--out",
        str(work / "labels"),
        "--feature-dir",
        str(work / "feats"),
        "--device",
        "cpu",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return np.asarray(load_feature(str(work / "feats"), "train", 1, 0, -1), dtype=np.float32)


def synthetic(n: int, dim: int = 768, centres: int = 500) -> np.ndarray:
    rng = np.random.default_rng(0)
    means = rng.standard_normal((centres, dim)).astype(np.float32) * 3
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        out[start : start + m] = means[rng.integers(0, centres, m)] + rng.standard_normal((m, dim), dtype=np.float32)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fold", default="demo_out/exp/manifests/fold1", help="a demo fold folder (make demo writes it)")
    ap.add_argument("--synthetic", type=int, default=1_000_000, help="frames of the synthetic set (0: skip it)")
    ap.add_argument("--sklearn-percent", type=float, default=0.02, help="share of the synthetic set sklearn is fitted on")
    ap.add_argument("--synthetic-clusters", type=int, default=500, help="Gaussian clusters of the synthetic set, and its K")
    ap.add_argument("--model", choices=["base", "tiny"], default="base", help="the random HuBERT the demo features come from")
    ap.add_argument("--layer", type=int, default=9)
    ap.add_argument("--clusters", type=int, default=50, help="K for the demo corpus's frames")
    args = parse_args(ap, SMALL)
    print("k-means on this machine's CPU; seed 0; one run each")
    if Path(args.fold, "train.tsv").is_file():
        with tempfile.TemporaryDirectory() as tmp:
            feats = demo_features(Path(args.fold), Path(tmp), args.model, args.layer, args.clusters)
        compare(f"demo corpus training frames, HuBERT {args.model} layer {args.layer} (random weights)", feats, args.clusters, feats)
    else:
        print(f"(no {args.fold}/train.tsv: run make demo first, or give --fold)")
    if args.synthetic:
        feats = synthetic(args.synthetic, centres=args.synthetic_clusters)
        rng = np.random.default_rng(1)
        sample = feats[rng.choice(len(feats), int(len(feats) * args.sklearn_percent), replace=False)]
        compare("synthetic clusters", feats, args.synthetic_clusters, sample)


if __name__ == "__main__":
    main()
