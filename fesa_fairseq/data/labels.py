"""Utterance labels of a fold folder: ``dict.emo.txt`` (the class order) and ``{split}.emo`` (aligned with
``{split}.tsv``). Every reader of labels (the task, the acoustic reference, the analyses) goes through here."""

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

from fesa_fairseq.data.files import PathLike, read_lines, read_manifest
from fesa_fairseq.errors import InputError


def read_label_dictionary(path: PathLike) -> Tuple[List[str], List[int]]:
    """``label count`` lines, in class-index order."""
    labels, counts = [], []
    for line, text in enumerate(read_lines(path), start=1):
        parts = text.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise InputError(f"{path}:{line}: expected 'label count', got {text!r}")
        if parts[0] in labels:
            raise InputError(f"{path}:{line}: label {parts[0]!r} appears twice")
        labels.append(parts[0])
        counts.append(int(parts[1]))
    if len(labels) < 2:
        raise InputError(f"{path} must list at least two classes, found {len(labels)}")
    return labels, counts


def read_targets(path: PathLike, labels: List[str], dict_path: PathLike) -> List[int]:
    """Class indices of the label words in `path`; a word not in the dictionary is an error naming its line."""
    index = {label: i for i, label in enumerate(labels)}
    targets = []
    for line, label in enumerate(read_lines(path), start=1):
        if label not in index:
            raise InputError(f"{path}:{line}: label {label!r} is not in {dict_path} ({', '.join(labels)})")
        targets.append(index[label])
    return targets


def check_aligned(manifest: PathLike, label_file: PathLike, utterances: int, labels: int) -> None:
    if utterances != labels:
        raise InputError(f"{manifest} lists {utterances} utterances but {label_file} has {labels} labels; they must align line by line")


@dataclass
class LabelledSplit:
    """One split of a fold: audio paths, their sample counts and class indices, and the class list."""

    paths: List[str]
    sizes: List[int]
    targets: List[int]
    labels: List[str]


def read_labelled_split(fold_dir: PathLike, split: str, ext: str = "emo") -> LabelledSplit:
    fold = Path(fold_dir)
    dict_path = fold / f"dict.{ext}.txt"
    labels, _ = read_label_dictionary(dict_path)
    manifest, label_file = fold / f"{split}.tsv", fold / f"{split}.{ext}"
    root, rows = read_manifest(manifest)
    if not rows:  # every reader of a labelled split fits or scores on its utterances
        raise InputError(f"{manifest} lists no utterance: the {split} split is empty; prepare the folds again")
    targets = read_targets(label_file, labels, dict_path)
    check_aligned(manifest, label_file, len(rows), len(targets))
    return LabelledSplit([str(Path(root) / rel) for rel, _ in rows], [n for _, n in rows], targets, labels)


def check_class_token(name: str, where: str) -> None:
    """A class name dict.emo.txt can hold: one non-empty token, no whitespace of any kind (its lines are split on
    Unicode whitespace, so 'very angry' or a no-break space would read back as two fields) and nothing unprintable."""
    if not name or any(c.isspace() for c in name) or not name.isprintable():
        fix = "_".join("".join(c for c in name if c.isprintable() or c.isspace()).split()) or "neu"
        raise InputError(f"{where}: the class name {name!r} is not one printable word (no spaces, tabs, invisible characters); write e.g. {fix!r}")
