"""All of a corpus's audio in one manifest folder, without a label: what the authors' protocol pretrains and clusters on.

``protocol: authors`` (fesa run) fits TAPT's labels, TAPT, the emotion labels' k-means and CPT on the audio of every
session, the test sessions' included (transductive), as the authors' code did. Only audio goes here: the folder holds
``train.tsv`` (every utterance of every split of the folds named, once) and ``valid.tsv`` (the first fold's valid
split: the pretraining task's validation, a part of train), never a ``.emo`` file, so no utterance label can reach a stage that
reads it.
"""

import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from fesa.corpora.iemocap import SPLITS
from fesa.errors import FesaError
from fesa.files import atomic_write_json, write_manifest
from fesa.options import POOL_INFO
from fesa_fairseq.data.files import read_manifest

logger = logging.getLogger(__name__)


def _fold_rows(fold_dir: Path, splits: Sequence[str]) -> Tuple[str, List[Tuple[str, int]]]:
    roots, rows = set(), []
    for split in splits:
        path = fold_dir / f"{split}.tsv"
        if not path.is_file():
            raise FesaError(f"{path} does not exist: pool-audio reads the train, valid and test manifests of prepared folds (fesa prepare-*)")
        root, found = read_manifest(path)
        roots.add(root)
        rows += found
    if len(roots) > 1:
        raise FesaError(f"{fold_dir}: its splits' manifests name different audio roots ({', '.join(sorted(roots))}); pool-audio needs one")
    return roots.pop(), rows


def pool_audio(manifest_dir: Path, folds: Sequence[int], out: Path) -> Dict[str, object]:
    """Write ``out/train.tsv`` over the audio of every split of ``folds`` (each utterance once) and ``out/valid.tsv``
    (the first fold's valid split), then pool.json."""
    manifest_dir, out = Path(manifest_dir), Path(out)
    roots, every, valid = set(), {}, {}
    for k in folds:
        root, rows = _fold_rows(manifest_dir / f"fold{k}", SPLITS)
        roots.add(root)
        every.update(rows)
    valid.update(_fold_rows(manifest_dir / f"fold{folds[0]}", ("valid",))[1])
    if len(roots) > 1:
        raise FesaError(f"{manifest_dir}: the folds name different audio roots ({', '.join(sorted(roots))}); pool-audio needs one")
    out.mkdir(parents=True, exist_ok=True)
    root = roots.pop()
    write_manifest(out / "train.tsv", root, sorted(every.items()))
    write_manifest(out / "valid.tsv", root, sorted(valid.items()))
    info = {"manifests": str(manifest_dir.resolve()), "folds": list(folds), "train": len(every), "valid": len(valid), "labels": "none"}
    atomic_write_json(out / POOL_INFO, info)
    logger.info("pooled the audio of folds %s: %d utterances, %d of them for validation", list(folds), len(every), len(valid))
    return info
