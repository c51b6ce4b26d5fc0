"""A plain table of recordings -> fold manifests (fesa prepare-table), for a corpus of one's own.

The table is CSV or TSV (by its extension, else by its header line; UTF-8, a byte-order mark allowed) with a header
holding at least ``path`` (inside --audio-root: a path leading out of it, by ``..`` or absolute, only with
--allow-outside-root) and ``emotion`` (one word); optional ``speaker``, ``session``, ``split`` (train / valid / test)
and ``start`` / ``end`` (seconds, to cut an utterance out of a longer recording). Every row has the header's fields.

Folds: with a ``split`` column, one fold as given (valid: a stratified holdout of train where no row says valid);
otherwise leave-one-group-out over ``--group`` (default ``session``, else ``speaker``), or ``--folds N`` folds of
whole groups. Audio, checks, outputs and staging are those of fesa prepare-emobox (corpora/emobox.py).
"""

import csv
import io
import random
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from fesa.corpora.checks import Entry, Rules
from fesa.corpora.emobox import check_classes, emobox_corpus_files, write_prepared
from fesa.corpora.iemocap import SPLITS, holdout_split
from fesa.errors import FesaError
from fesa.files import check_output_dir
from fesa.options import HOLDOUT
from fesa_fairseq.data.files import read_text
from fesa_fairseq.data.labels import check_class_token

REQUIRED = ("path", "emotion")
TABLE_HINT = "is --audio-root (default: the table's folder) the folder the table's paths start from?"


def read_table(path: Path) -> Tuple[List[Tuple[str, dict]], List[str]]:
    """(table:line, row) of every data row, and the header; CSV or TSV."""
    text = read_text(path)
    first = text.splitlines()[0] if text.strip() else ""
    delimiter = "\t" if path.suffix.lower() == ".tsv" or (path.suffix.lower() != ".csv" and "\t" in first) else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise FesaError(f"{path}:1: the header needs the columns {', '.join(REQUIRED)} (missing: {', '.join(missing)}); found {header}")
    twice = sorted({h for h in header if header.count(h) > 1})
    if twice:
        raise FesaError(f"{path}:1: the header names {', '.join(map(repr, twice))} twice; name each column once")
    rows = []
    for row in reader:
        where = f"{path}:{reader.line_num}"
        if None in row or None in row.values():
            fields = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None) or [])
            raise FesaError(f"{where}: {fields} fields, the header has {len(header)}: quote a field that holds {delimiter!r}, or fill every column")
        rows.append((where, {k.strip(): v.strip() for k, v in row.items()}))
    if not rows:
        raise FesaError(f"{path} has a header but no rows")
    return rows, header


def _seconds(value: str, name: str, where: str) -> Optional[float]:
    if value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise FesaError(f"{where}: '{name}' is {value!r}, not a number of seconds") from None
    if not 0 <= seconds < float("inf"):
        raise FesaError(f"{where}: '{name}' is {value!r}; give a time in seconds >= 0")
    return seconds


def table_entries(rows: List[Tuple[str, dict]]) -> Dict[str, Tuple[Entry, dict]]:
    """Each row as an Entry keyed by its path (and times), with its other columns; repeats are errors."""
    entries: Dict[str, Tuple[Entry, dict]] = {}
    for where, row in rows:
        if not row.get("path") or not row.get("emotion"):
            raise FesaError(f"{where}: an empty 'path' or 'emotion'")
        check_class_token(row["emotion"], f"{where}: 'emotion'")
        start, end = _seconds(row.get("start", ""), "start", where), _seconds(row.get("end", ""), "end", where)
        if start is not None and end is not None and end <= start:
            raise FesaError(f"{where}: end {end} is not after start {start}")
        key = row["path"] + (f"#{start}-{end}" if start is not None or end is not None else "")
        if key in entries:
            raise FesaError(f"{where}: {key} appears twice (first at {entries[key][0].where})")
        entries[key] = (Entry(key, row["path"], row["emotion"], row["emotion"], start, end, where), row)
    return entries


def given_split(entries: Dict[str, Tuple[Entry, dict]], holdout: tuple) -> Dict[int, Dict[str, List[Entry]]]:
    splits: Dict[str, List[Entry]] = {s: [] for s in SPLITS}
    for e, row in entries.values():
        if row["split"] not in SPLITS:
            raise FesaError(f"{e.where}: split {row['split']!r}; give train, valid or test")
        splits[row["split"]].append(e)
    if not splits["test"] or not splits["train"]:
        raise FesaError(f"{next(iter(entries.values()))[0].where.split(':')[0]}: the split column needs train and test rows")
    if not splits["valid"]:
        splits["train"], splits["valid"] = holdout_split(splits["train"], *holdout)
    return {1: splits}


def group_folds(entries: Dict[str, Tuple[Entry, dict]], column: str, folds: Optional[int], holdout: tuple) -> Dict[int, Dict[str, List[Entry]]]:
    """Leave one group out, or ``folds`` folds of whole groups (seeded, balanced by utterance count)."""
    by_group: Dict[str, List[Entry]] = defaultdict(list)
    for e, row in entries.values():
        if not row.get(column):
            raise FesaError(f"{e.where}: an empty '{column}': every row needs its group")
        by_group[row[column]].append(e)
    groups = sorted(by_group)
    check_fold_count(folds, len(groups), column)
    if folds is None:
        parts = [[g] for g in groups]
    else:
        random.Random(holdout[1]).shuffle(groups)
        parts = [[] for _ in range(folds)]
        for g in sorted(groups, key=lambda g: -len(by_group[g])):  # largest first, into the smallest fold
            min(parts, key=lambda p: sum(len(by_group[x]) for x in p)).append(g)
    out = {}
    for k, test_groups in enumerate(parts, start=1):
        train, valid = holdout_split([e for g in groups if g not in test_groups for e in by_group[g]], *holdout)
        out[k] = {"train": train, "valid": valid, "test": [e for g in test_groups for e in by_group[g]]}
    return out


def check_fold_count(folds: Optional[int], groups: int, column: str) -> None:
    """--folds (n_folds) within 2 .. the number of groups; leave-one-group-out needs two groups."""
    if folds is None and groups < 2:
        raise FesaError(f"the table has one '{column}' group: leave-one-group-out needs two or more; add groups, or a 'split' column")
    if folds is not None and not 2 <= folds <= groups:
        raise FesaError(f"--folds {folds}: the table has {groups} '{column}' group(s), and each fold tests on whole groups: give 2 to {groups}")


def group_column(header: List[str], group: Optional[str], table: Path) -> str:
    """The column whose groups make the folds: --group, else session, else speaker."""
    if group is not None and group not in header:
        raise FesaError(f"--group {group}: {table} has no such column (its columns: {', '.join(header)})")
    column = group or ("session" if "session" in header else "speaker" if "speaker" in header else None)
    if column is None:
        raise FesaError(f"{table}: no 'session' or 'speaker' column to make folds of: add one, name another with --group, or add a 'split' column")
    return column


def table_fold_count(table: Path, group: Optional[str] = None, folds: Optional[int] = None) -> int:
    """How many folds prepare_table will write for these options (fesa run plans them before it runs), checked as
    prepare_table checks them."""
    rows, header = read_table(table)
    if "split" in header and group is None and folds is None:
        return 1
    column = group_column(header, group, table)
    groups = len({row[column] for _, row in rows if row.get(column)})
    check_fold_count(folds, groups, column)
    return groups if folds is None else folds


def corpus_fingerprint_files(fmt: str, path: Path) -> List[Path]:
    """The files whose content defines a corpus of this format (``corpus.format`` and ``corpus.path`` of an experiment):
    a table's file; EmoBox's listing, label_map.json and fold lists; IEMOCAP's EmoEvaluation files. The audio itself
    is not listed: prepare's audio/sources.json follows it by size and time."""
    if fmt == "table":
        return [Path(path)]
    if fmt == "emobox":
        return emobox_corpus_files(Path(path))
    from fesa.corpora.iemocap import SESSIONS, evaluation_files

    return [f for session in SESSIONS for f in evaluation_files(Path(path), session)]


def _speakers(entries: Dict[str, Tuple[Entry, dict]], header: List[str], table: Path) -> Callable[[Entry], str]:
    """Each row's speaker, for a validation split of whole speakers."""
    if "speaker" not in header:
        raise FesaError(f"{table}: validation: speakers (--validation speakers) needs a 'speaker' column: add one, or hold out utterances")
    empty = next((e for e, row in entries.values() if not row["speaker"]), None)
    if empty is not None:
        raise FesaError(f"{empty.where}: an empty 'speaker': validation: speakers needs every row's speaker")
    speakers = {e.utt_id: row["speaker"] for e, row in entries.values()}
    return lambda e: speakers[e.utt_id]


def prepare_table(
    table: Path,
    out_dir: Path,
    audio_root: Optional[Path],
    valid_fraction: float,
    seed: int,
    group: Optional[str] = None,
    folds: Optional[int] = None,
    overwrite: bool = False,
    progress: bool = True,
    allow_outside_root: bool = False,
    validation: str = HOLDOUT.validation,
) -> Dict[str, object]:
    table, out_dir = Path(table).resolve(), Path(out_dir)
    audio_root = Path(audio_root).resolve() if audio_root else table.parent
    if not 0.0 < valid_fraction < 1.0:
        raise FesaError(f"--valid-fraction must be between 0 and 1, got {valid_fraction}")
    check_output_dir(out_dir, overwrite, "prepare.json", inputs=[table, audio_root])
    rows, header = read_table(table)
    entries = table_entries(rows)
    holdout = (valid_fraction, seed, _speakers(entries, header, table) if validation == "speakers" else None)
    rules = Rules(hint=TABLE_HINT, start="start", end="end", allow_outside_root=allow_outside_root)
    if "split" in header and group is None and folds is None:
        fold_sets, how = given_split(entries, holdout), "the table's split column"
    else:
        column = group_column(header, group, table)
        fold_sets, how = group_folds(entries, column, folds, holdout), f"{'leave-one-group-out' if folds is None else f'{folds} folds'} over {column}"
        rules = replace(rules, group_column=column, group_of={e.utt_id: row[column] for e, row in entries.values()})
    classes = sorted({e.label for e, _ in entries.values()})
    check_classes(fold_sets, classes, table)
    about = {"format": "table", "table": str(table), "folds_from": how, "counts": dict(sorted(Counter(e.label for e, _ in entries.values()).items()))}
    return write_prepared(out_dir, audio_root, fold_sets, classes, about, overwrite, progress, inputs=[table, audio_root], rules=rules)
