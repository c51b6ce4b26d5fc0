"""Control targets for continued pretraining, made from the method's own frame labels so that only one thing changes.

- ``utterance``: every frame of an utterance labelled with the utterance's emotion (its class index), the naive
  alternative the paper argues against. Each split uses its own utterance labels (train and valid; test never
  gets labels).
- ``shuffled``: each utterance's cluster sequence replaced by another utterance's of the same split, cut or tiled
  to its own length: the label statistics stay, the tie between labels and audio goes.

Both keep each line's length (the model's frame count of the utterance), so fairseq's HuBERT task reads them as it
reads the clusters. Written whole (``labels.json`` last) into OUT, swapped in as a set.
"""

import logging
from collections import Counter
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from fesa.checkpoints import HUBERT_GEOMETRY
from fesa.errors import FesaError
from fesa.files import atomic_write_json, atomic_write_lines, check_output_dir, read_json, staged_dir
from fesa.options import CONTROL_LABEL_KINDS as KINDS
from fesa.options import LABELS_INFO, ControlLabelOptions
from fesa_fairseq.data.files import read_lines, read_manifest
from fesa_fairseq.data.labels import read_labelled_split

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid")


def utterance_lines(lines: Sequence[str], targets: Sequence[int]) -> List[str]:
    """Each line's frames all labelled with its utterance's class index."""
    return [" ".join([str(t)] * len(line.split())) for line, t in zip(lines, targets)]


def shuffled_lines(lines: Sequence[str], rng: np.random.Generator) -> List[str]:
    """Each line replaced by another line's labels, cut or tiled to its own length. The donor is the next line in
    order of length (ties in random order, the longest takes the shortest's), so little is cut or tiled and the
    label histogram stays close to the clusters'."""
    tokens = [line.split() for line in lines]
    lengths = np.array([len(t) for t in tokens], dtype=np.float64)
    order = np.argsort(lengths + rng.random(len(lines)) * 0.5, kind="stable")
    donor = np.empty(len(lines), dtype=np.int64)
    donor[order] = np.roll(order, -1)
    return [" ".join(np.resize(np.array(tokens[d]), len(own)).tolist()) for own, d in zip(tokens, donor)]


def label_rate(labels_dir: Path) -> float:
    """The frame rate labels.json records (50 where it does not say), read strictly: it is a user's file."""
    info_path = labels_dir / LABELS_INFO
    info = read_json(info_path)
    rate = (info.get("label_rate") or 50) if isinstance(info, dict) else None
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise FesaError(f"{info_path} is damaged: a mapping whose 'label_rate' is a positive number; rerun fesa pseudo-labels")
    return float(rate)


def check_frames(labels_dir: Path, manifest_dir: Path, split: str, lines: Sequence[str], size: int) -> None:
    """Each label line as long as its utterance (within 2 frames, at the labels' rate), of cluster numbers below
    ``size``: labels of this very fold."""
    rate = label_rate(labels_dir)
    _, rows = read_manifest(manifest_dir / f"{split}.tsv")
    km = labels_dir / f"{split}.km"
    if len(rows) != len(lines):
        raise FesaError(f"{km} has {len(lines)} lines but {manifest_dir / f'{split}.tsv'} lists {len(rows)} utterances: labels of another fold?")
    for i, ((rel, samples), line) in enumerate(zip(rows, lines), start=1):
        bad = next((t for t in line.split() if not (t.isdigit() and int(t) < size)), None)
        if bad is not None:
            raise FesaError(f"{km}:{i} holds {bad!r}: labels are cluster numbers 0..{size - 1} ({labels_dir / 'dict.km.txt'})")
        if abs(len(line.split()) - samples * rate / HUBERT_GEOMETRY.sample_rate) > 2:
            raise FesaError(f"{km}:{i} has {len(line.split())} labels for {rel} ({samples} samples at {rate:g} a second): labels of another fold?")


def control_lines(source: Dict[str, List[str]], kind: str, manifest_dir: Path, labels_dir: Path, rng: np.random.Generator):
    """The control's lines per split, and the class names (utterance) or None (shuffled)."""
    made, classes = {}, None
    for split, lines in source.items():
        if kind == "shuffled":
            if len(lines) < 2:
                raise FesaError(f"{labels_dir / f'{split}.km'} has {len(lines)} line(s): shuffling needs two utterances or more in a split")
            made[split] = shuffled_lines(lines, rng)
            continue
        labelled = read_labelled_split(manifest_dir, split)
        if len(labelled.targets) != len(lines):
            emo = manifest_dir / f"{split}.emo"
            raise FesaError(f"{labels_dir / f'{split}.km'} has {len(lines)} lines but {emo} has {len(labelled.targets)}: labels of another fold?")
        made[split], classes = utterance_lines(lines, labelled.targets), labelled.labels
    return made, classes


def make_control_labels(
    labels_dir: Path, manifest_dir: Path, out_dir: Path, kind: str, seed: int = ControlLabelOptions.seed, overwrite: bool = False
) -> Dict[str, object]:
    """OUT/{train,valid}.km, dict.km.txt and labels.json of the control ``kind`` from the labels in LABELS_DIR."""
    if kind not in KINDS:
        raise FesaError(f"--kind {kind}: one of {', '.join(KINDS)}")
    ControlLabelOptions(seed).check()
    labels_dir, manifest_dir, out_dir = Path(labels_dir), Path(manifest_dir), Path(out_dir)
    source = {split: read_lines(labels_dir / f"{split}.km") for split in SPLITS}
    clusters = len(read_lines(labels_dir / "dict.km.txt"))
    for split, lines in source.items():
        check_frames(labels_dir, manifest_dir, split, lines, clusters)
    check_output_dir(out_dir, overwrite, LABELS_INFO)
    made, classes = control_lines(source, kind, manifest_dir, labels_dir, np.random.default_rng(seed))
    counts = Counter(token for line in made["train"] for token in line.split())
    size = len(classes) if classes else clusters
    summary = {"kind": kind, "from": str(labels_dir), "seed": seed, "classes": classes, "splits": {s: len(v) for s, v in made.items()}}
    with staged_dir(out_dir, overwrite, LABELS_INFO, inputs=[labels_dir, manifest_dir]) as tmp:
        for split, lines in made.items():
            atomic_write_lines(tmp / f"{split}.km", lines)
        atomic_write_lines(tmp / "dict.km.txt", [f"{k} {counts.get(str(k), 0)}" for k in range(size)])
        atomic_write_json(tmp / LABELS_INFO, summary)
    logger.info("wrote %s labels (%s) to %s", kind, ", ".join(f"{s} {len(v)}" for s, v in made.items()), out_dir)
    return summary
