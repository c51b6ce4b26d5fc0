"""The paper's mechanism, measured where the truth of every frame is known: do a model's frames line up with the
emotional state they carry?

A frame's true state is the class of the emotional segment covering its centre, or the neutral class outside every
segment (the segment file given: a demo corpus's fesa_demo_segments.tsv, another corpus's own). For one model at
one layer, on frames of the fold's training split (fitting) and test split (scoring), nothing fitted on test:

- purity and NMI of k-means clusters (K as the method uses) against the true states;
- a linear probe (class-balanced logistic regression on standardised frames) trained on training frames and
  scored on test frames: frame UA, the mean recall over the states.

No utterance label is used: this is independent of the utterance classifier and of its pooling.
"""

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import normalized_mutual_info_score
from tqdm import tqdm

from fesa.errors import FesaError
from fesa.files import atomic_write_json
from fesa.labels.analyze_clusters import purity
from fesa.labels.kmeans_backends import assign, fit_with_options
from fesa.options import ALIGNMENT_FILE, NEUTRAL, AlignmentOptions, KMeansOptions
from fesa_fairseq.data.labels import read_labelled_split
from fesa_fairseq.scoring import confusion_matrix, counts_of, unweighted_accuracy

logger = logging.getLogger(__name__)

PROBE_FRAMES = 40_000  # training frames the probe is fitted on at most (a seeded sample)


def frame_states(frames: int, frame_rate: float, events: Sequence[Mapping], classes: Sequence[str], neutral: str) -> np.ndarray:
    """The true state (class index) of each frame: the emotional event covering its centre, else neutral."""
    index = {c: i for i, c in enumerate(classes)}
    states = np.full(frames, index[neutral], dtype=np.int64)
    centres = (np.arange(frames) + 0.5) / frame_rate
    for e in events:
        if e["emo"] != neutral:
            if e["emo"] not in index:
                raise FesaError(f"segment label {e['emo']!r} is not one of the fold's classes ({', '.join(classes)})")
            states[(centres >= float(e["start"])) & (centres < float(e["end"]))] = index[e["emo"]]
    return states


def split_frames(reader, fold_dir: Path, split: str, truth: Mapping[str, dict], neutral: str, limit: int, seed: int, progress: bool):
    """Layer features and true states of the frames of (a seeded sample of) the split's utterances with truth."""
    data = read_labelled_split(fold_dir, split)
    if neutral not in data.labels:
        raise FesaError(f"--neutral {neutral} is not one of {fold_dir}'s classes ({', '.join(data.labels)})")
    known = [i for i, p in enumerate(data.paths) if Path(p).stem in truth]
    if not known:
        raise FesaError(f"no utterance of {fold_dir / f'{split}.tsv'} has true segments: nothing to measure")
    picked = sorted(np.random.default_rng(seed).permutation(known)[:limit])
    feats, states = [], []
    for i in tqdm(picked, desc=f"{split} frames", unit="utt", disable=not progress):
        x = reader.get_feats(data.paths[i], data.sizes[i]).float().numpy()
        feats.append(x)
        states.append(frame_states(len(x), reader.label_rate, truth[Path(data.paths[i]).stem]["emotion"], data.labels, neutral))
    return np.concatenate(feats), np.concatenate(states), data.labels


def probe_ua(train: Tuple[np.ndarray, np.ndarray], test: Tuple[np.ndarray, np.ndarray], classes: int, seed: int) -> float:
    """Frame UA (%) of a linear probe fitted on (a sample of) the training frames, scored on the test frames."""
    (x, y), (tx, ty) = train, test
    if len(x) > PROBE_FRAMES:
        keep = np.random.default_rng(seed).choice(len(x), PROBE_FRAMES, replace=False)
        x, y = x[keep], y[keep]
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    probe = LogisticRegression(max_iter=1000, class_weight="balanced", random_state=seed).fit((x - mean) / std, y)
    predicted = probe.predict((tx - mean) / std)
    return unweighted_accuracy(counts_of(confusion_matrix(ty, predicted, classes)))


def measure_alignment(
    reader,
    fold_dir: Path,
    truth: Mapping[str, dict],
    clusters: int = AlignmentOptions.clusters,
    neutral: str = NEUTRAL,
    max_utterances: int = AlignmentOptions.max_utterances,
    seed: int = AlignmentOptions.seed,
    kmeans: Optional[KMeansOptions] = None,
    progress: bool = True,
) -> Dict[str, object]:
    """Purity, NMI (k-means fitted on training frames) and probe frame UA, all scored on the test frames."""
    AlignmentOptions(clusters, max_utterances, seed).check()
    opts = (kmeans or KMeansOptions()).resolved()
    x, y, classes = split_frames(reader, Path(fold_dir), "train", truth, neutral, max_utterances, seed, progress)
    tx, ty, _ = split_frames(reader, Path(fold_dir), "test", truth, neutral, max_utterances, seed, progress)
    km = fit_with_options(x, clusters, opts, seed)
    assigned = assign(km, tx)
    result = {
        "checkpoint": str(reader.checkpoint),
        "layer": reader.layer,
        "clusters": clusters,
        "classes": classes,
        "neutral": neutral,
        "train_frames": int(len(y)),
        "test_frames": int(len(ty)),
        "test_state_shares": {c: round(float(np.mean(ty == i)), 4) for i, c in enumerate(classes)},
        "purity": purity(assigned, ty),
        "majority_share": float(np.bincount(ty).max() / len(ty)),
        "nmi": float(normalized_mutual_info_score(ty, assigned)),
        "probe_ua": probe_ua((x, y), (tx, ty), len(classes), seed),
        "chance_ua": 100.0 / len(np.unique(ty)),
    }
    logger.info(
        "purity %.3f (majority %.3f), NMI %.3f, probe frame UA %.1f%%", result["purity"], result["majority_share"], result["nmi"], result["probe_ua"]
    )
    return result


def write_alignment(result: Mapping[str, object], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / ALIGNMENT_FILE, dict(result))


def format_alignment(result: Mapping[str, object]) -> List[str]:
    return [
        f"layer {result['layer']} of {result['checkpoint']}: {result['train_frames']} training frames, {result['test_frames']} test frames",
        f"k-means K={result['clusters']}: purity {result['purity']:.3f} (majority share {result['majority_share']:.3f}), NMI {result['nmi']:.3f}",
        f"linear probe: frame UA {result['probe_ua']:.1f}% (chance {result['chance_ua']:.1f}%)",
    ]
