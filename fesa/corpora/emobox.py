"""EmoBox's corpus layout -> this project's fold manifests (fesa prepare-emobox).

EmoBox (Ma et al., Interspeech 2024) publishes 32 corpora in one layout with fixed folds. One corpus folder of its
``data/`` holds:

- ``<name>.jsonl``: one utterance a line: ``key``, ``wav`` (relative to the audio root), ``emo`` (the raw label),
  ``sample_rate``, ``length``, ``channel``, optionally ``start_time`` / ``end_time`` in seconds;
- ``label_map.json``: raw label -> class (several raw labels may map to one class);
- ``fold_<k>/<name>_{train,test}_fold_<k>.jsonl`` and, where the corpus has one, ``_valid_``.

What is written is what ``fesa prepare-iemocap`` writes (manifests/README.md): ``fold<k>/{train,valid,test}.{tsv,emo}``,
``dict.emo.txt`` per fold (classes in alphabetical order, counted on that fold's train split), ``utterances.tsv`` and
``prepare.json`` (last), plus ``audio/``: every utterance converted once to 16 kHz mono 16-bit wav (channels
averaged, scipy's polyphase resampler, cut by start/end where given) and shared by all folds. Validation is the
corpus's own valid list where it has one, else a label-stratified seeded holdout of the fold's training list
(never of its test list). Everything is read and checked (corpora/checks.py) before anything is written; the folder
is staged and swapped in whole; a rerun reuses converted files whose source did not change. Fold folders are
numbered from 1, as EmoBox numbers them; a ``fold_0`` is refused.
"""

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from fesa.corpora.checks import APART, Entry, Rules, check_leaks, check_same_content, check_sources, file_digest, source_paths, span
from fesa.corpora.iemocap import LISTING, PREPARE_INFO, SAMPLE_RATE, SPLITS, holdout_split
from fesa.errors import FesaError, user_errors
from fesa.files import atomic_write_json, atomic_write_lines, check_output_dir, parse_json, read_json, staged_dir, write_manifest
from fesa.options import HOLDOUT
from fesa_fairseq.data.audio import AudioSource
from fesa_fairseq.data.files import read_lines, read_text
from fesa_fairseq.data.labels import check_class_token

logger = logging.getLogger(__name__)

AUDIO = "audio"
SOURCES = "sources.json"  # audio/sources.json: what each converted file was made from, for reuse by a rerun
EMOBOX_HINT = "is --audio-root the folder EmoBox's wav paths start from?"


def read_jsonl(path: Path) -> List[Tuple[str, dict]]:
    """(file:line, object) of every non-blank line; a line that is not a json object is an error naming it."""
    rows = []
    for i, line in enumerate(read_lines(path), start=1):
        if not line.strip():
            continue
        row = parse_json(line, f"{path}:{i}")
        if not isinstance(row, dict):
            raise FesaError(f"{path}:{i}: expected a json object, got {type(row).__name__}")
        rows.append((f"{path}:{i}", row))
    return rows


def read_label_map(path: Path) -> Dict[str, str]:
    """raw label -> class, strictly: a raw label given twice is refused, every class is one word."""
    mapping = read_json(path)
    if not isinstance(mapping, dict) or not mapping or not all(isinstance(v, str) and v.strip() for v in mapping.values()):
        raise FesaError(f'{path}: expected an object of raw label -> class name, e.g. {{"angry": "ang"}}')
    for raw, name in mapping.items():
        check_class_token(name.strip(), f"{path}, {raw!r}")
    return {str(k): v.strip() for k, v in mapping.items()}


def _field(row: dict, name: str, where: str) -> str:
    value = row.get(name)
    if value is None or str(value).strip() == "":
        raise FesaError(f"{where}: no '{name}'")
    return str(value).strip()


def _seconds(row: dict, name: str, where: str) -> Optional[float]:
    value = row.get(name)
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise FesaError(f"{where}: '{name}' is {value!r}, not a number of seconds") from None
    if not np.isfinite(seconds) or seconds < 0:
        raise FesaError(f"{where}: '{name}' is {value!r}; give a time in seconds >= 0")
    return seconds


def corpus_entries(corpus_dir: Path, label_map: Dict[str, str], drop_unmapped: bool) -> Tuple[Dict[str, Entry], Counter, set]:
    """Every utterance of ``<name>.jsonl`` by key; the raw labels dropped as unmapped (with --drop-unmapped), and
    the keys dropped."""
    listing = corpus_dir / f"{corpus_dir.name}.jsonl"
    if not listing.is_file():
        raise FesaError(f"{listing} does not exist: give one corpus folder of EmoBox's data/ (e.g. data/ravdess)")
    entries: Dict[str, Entry] = {}
    dropped: Counter = Counter()
    dropped_keys = set()
    for where, row in read_jsonl(listing):
        key, raw = _field(row, "key", where), _field(row, "emo", where)
        if key in entries:
            raise FesaError(f"{where}: key {key!r} appears twice (first at {entries[key].where})")
        if raw not in label_map:
            if not drop_unmapped:
                raise FesaError(f"{where}: label {raw!r} is not in {corpus_dir / 'label_map.json'}; add it, or pass --drop-unmapped")
            dropped[raw] += 1
            dropped_keys.add(key)
            continue
        start, end = _seconds(row, "start_time", where), _seconds(row, "end_time", where)
        if start is not None and end is not None and end <= start:
            raise FesaError(f"{where}: end_time {end} is not after start_time {start}")
        entries[key] = Entry(key, _field(row, "wav", where), raw, label_map[raw], start, end, where)
    if not entries:
        raise FesaError(f"{listing} lists no utterance with a mapped label")
    return entries, dropped, dropped_keys


def fold_folders(corpus_dir: Path) -> Dict[int, Path]:
    """EmoBox's fold_<k> folders by k; EmoBox numbers folds from 1, and so does every fold folder written here."""
    folders = {int(p.name[len("fold_") :]): p for p in corpus_dir.glob("fold_*") if p.is_dir() and p.name[len("fold_") :].isdigit()}
    if not folders:
        raise FesaError(f"{corpus_dir} has no fold_<k> folders: is it one corpus folder of EmoBox's data/?")
    if min(folders) < 1:
        raise FesaError(f"{folders[min(folders)]}: folds are numbered from 1 (EmoBox's fold_1, fold_2, ...): rename the folder and its lists")
    return dict(sorted(folders.items()))


def _split_keys(folder: Path, name: str, k: int, split: str) -> Optional[List[Tuple[str, str]]]:
    """(file:line, key) of a fold's list; a key listed twice in it is refused."""
    path = folder / f"{name}_{split}_fold_{k}.jsonl"
    if not path.is_file():
        return None
    rows, first = [], {}
    for where, row in read_jsonl(path):
        key = _field(row, "key", where)
        if key in first:
            raise FesaError(f"{where}: key {key!r} is listed twice (first at {first[key]}); list each utterance once")
        first[key] = where
        rows.append((where, key))
    return rows


def _fold_split(rows: List[Tuple[str, str]], entries: Dict[str, Entry], dropped: set) -> List[Entry]:
    """The fold file's utterances (unmapped ones, dropped with --drop-unmapped, left out); unknown keys are errors."""
    out = []
    for where, key in rows:
        if key in entries:
            out.append(entries[key])
        elif key not in dropped:
            raise FesaError(f"{where}: key {key!r} is not in the corpus's own listing")
    return out


def read_fold(
    folder: Path, name: str, k: int, entries: Dict[str, Entry], dropped: set, holdout: Tuple[float, int]
) -> Tuple[Dict[str, List[Entry]], str]:
    """train, valid, test of fold k, and whence valid came: the corpus's file or a holdout of the training list."""
    listed = {split: _split_keys(folder, name, k, split) for split in SPLITS}
    for split in ("train", "test"):
        if listed[split] is None:
            raise FesaError(f"{folder} has no {name}_{split}_fold_{k}.jsonl: every fold needs its train and test lists")
    splits = {split: _fold_split(rows, entries, dropped) for split, rows in listed.items() if rows is not None}
    for a, b in APART:
        other = {e.utt_id for e in splits.get(b, [])}
        leak = next((e for e in splits.get(a, []) if e.utt_id in other), None)
        if leak is not None:
            raise FesaError(
                f"{folder}: key {leak.utt_id!r} is in both the {a} and the {b} list of fold {k}; "
                "a fold must not test on (or choose its checkpoint by) what it learns from"
            )
    if "valid" in splits:
        return splits, "the corpus's valid list"
    splits["train"], splits["valid"] = holdout_split(splits["train"], *holdout)
    return splits, f"a label-stratified holdout of {holdout[0]:g} of the training list (seed {holdout[1]})"


def check_classes(folds: Dict[int, Dict[str, List[Entry]]], classes: Sequence[str], where: Path) -> None:
    """Two classes or more; in every fold a train and a test split, every class in train, and a valid split."""
    if len(classes) < 2:
        raise FesaError(f"{where}: every utterance is of the one class {classes[0]!r}; a classifier needs two or more: check the labels")
    for k, splits in folds.items():
        for split in ("train", "test"):
            if not splits.get(split):
                raise FesaError(f"{where}, fold {k}: its {split} split is empty; every fold needs utterances to learn from and to test on")
        missing = sorted(set(classes) - {e.label for e in splits["train"]})
        if missing:
            raise FesaError(f"{where}, fold {k}: its train split has no {', '.join(missing)} utterance; no class can be learnt unseen")
        if not splits.get("valid"):
            counts = Counter(e.label for e in splits["train"])
            raise FesaError(
                f"{where}, fold {k}: its valid split is empty (a holdout of train takes from a class only when it has 2 or more training "
                f"utterances; here {', '.join(f'{c}: {counts[c]}' for c in classes)}): add utterances, or give the fold a valid list or split"
            )


def audio_name(key: str) -> str:
    """A file name for a key, stable across runs and distinct for distinct keys."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)[-80:]
    return f"{safe}-{hashlib.sha1(key.encode()).hexdigest()[:8]}.wav"


def _signature(source: Path, e: Entry) -> dict:
    st = source.stat()
    return {"source": str(source.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "start": e.start, "end": e.end}


def convert_one(source: Path, e: Entry, target: Path) -> int:
    """16 kHz mono 16-bit wav of the utterance (cut by its start and end, checked by checks.check_sources); its sample count."""
    try:
        audio = AudioSource(source, rate=SAMPLE_RATE)
    except user_errors() as err:
        raise FesaError(f"{e.where}: {err} (soundfile reads wav, flac and ogg: convert other formats, e.g. mp4, first)") from None
    first, last = span(e, audio.samples)
    wav = audio.read(first, last - first)
    sf.write(str(target), np.clip(wav, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return last - first


def convert_audio(
    entries: Sequence[Entry], paths: Dict[str, Path], staging: Path, previous: Path, progress: bool
) -> Tuple[Dict[str, int], dict, int, Dict[str, str]]:
    """Every utterance into staging/audio; files converted from an unchanged source are taken from ``previous``.
    Also the digest of each converted file, to find the same audio under two names."""
    old = json.loads(read_text(previous / SOURCES)) if (previous / SOURCES).is_file() else {}
    staging.mkdir(parents=True, exist_ok=True)
    samples, sources, reused, digests = {}, {}, 0, {}
    for e in tqdm(entries, desc="converting audio", unit="utt", disable=not progress):
        source, name = paths[e.utt_id], audio_name(e.utt_id)
        sig = _signature(source, e)
        if old.get(name, {}).get("signature") == sig and (previous / name).is_file():
            _link_or_copy(previous / name, staging / name)
            samples[e.utt_id], reused = old[name]["samples"], reused + 1
        else:
            samples[e.utt_id] = convert_one(source, e, staging / name)
        sources[name] = {"signature": sig, "samples": samples[e.utt_id]}
        digests[e.utt_id] = file_digest(staging / name)
    return samples, sources, reused, digests


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def emobox_corpus_files(corpus_dir: Path) -> List[Path]:
    """The files whose content defines an EmoBox corpus (listing, label map, fold lists), for a fingerprint; the audio
    is followed by audio/sources.json instead."""
    corpus_dir = Path(corpus_dir)
    lists = sorted(p for folder in fold_folders(corpus_dir).values() for p in folder.glob(f"{corpus_dir.name}_*_fold_*.jsonl"))
    return [corpus_dir / f"{corpus_dir.name}.jsonl", corpus_dir / "label_map.json", *lists]


def read_corpus(corpus_dir: Path, drop_unmapped: bool, holdout: Tuple[float, int]):
    """Entries, folds, classes and what was dropped, all checked; nothing written."""
    label_map = read_label_map(corpus_dir / "label_map.json")
    entries, dropped, dropped_keys = corpus_entries(corpus_dir, label_map, drop_unmapped)
    folds, valid_from = {}, {}
    for k, folder in fold_folders(corpus_dir).items():
        folds[k], valid_from[k] = read_fold(folder, corpus_dir.name, k, entries, dropped_keys, holdout)
    classes = sorted({e.label for e in entries.values()})
    check_classes(folds, classes, corpus_dir)
    return entries, folds, classes, dropped, valid_from


def write_layout(staging: Path, final_audio: Path, folds: Dict[int, Dict[str, List[Entry]]], classes: Sequence[str], samples: Dict[str, int]) -> None:
    """The fold folders; manifests name the audio folder where it will be once swapped in."""
    for k, splits in folds.items():
        fold_dir = staging / f"fold{k}"
        for split in SPLITS:
            rows = splits[split]
            write_manifest(fold_dir / f"{split}.tsv", final_audio, [(audio_name(e.utt_id), samples[e.utt_id]) for e in rows])
            atomic_write_lines(fold_dir / f"{split}.emo", [e.label for e in rows])
        counts = Counter(e.label for e in splits["train"])
        atomic_write_lines(fold_dir / "dict.emo.txt", [f"{c} {counts[c]}" for c in classes])


def prepare_emobox(
    corpus_dir: Path,
    out_dir: Path,
    audio_root: Path,
    valid_fraction: float,
    seed: int,
    drop_unmapped: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    allow_outside_root: bool = False,
    validation: str = HOLDOUT.validation,
) -> Dict[str, object]:
    corpus_dir, out_dir, audio_root = Path(corpus_dir).resolve(), Path(out_dir), Path(audio_root).resolve()
    if not audio_root.is_dir():
        raise FesaError(f"--audio-root {audio_root} is not a folder")
    if not 0.0 < valid_fraction < 1.0:
        raise FesaError(f"--valid-fraction must be between 0 and 1, got {valid_fraction}")
    if validation == "speakers":
        raise FesaError("validation: speakers (--validation speakers) needs each utterance's speaker; EmoBox's jsonl has none: use utterances")
    check_output_dir(out_dir, overwrite, PREPARE_INFO, inputs=[corpus_dir, audio_root])
    entries, folds, classes, dropped, valid_from = read_corpus(corpus_dir, drop_unmapped, (valid_fraction, seed))
    about = {
        "format": "emobox",
        "corpus": str(corpus_dir),
        "dropped": {"unmapped_labels": dict(sorted(dropped.items())), "in_no_fold": len(set(entries) - _keys(folds))},
        "valid": {k: v for k, v in valid_from.items()},
    }
    rules = Rules(hint=EMOBOX_HINT, allow_outside_root=allow_outside_root)
    return write_prepared(out_dir, audio_root, folds, classes, about, overwrite, progress, inputs=[corpus_dir, audio_root], rules=rules)


def _keys(folds: Dict[int, Dict[str, List[Entry]]]) -> set:
    return {e.utt_id for splits in folds.values() for rows in splits.values() for e in rows}


def write_prepared(
    out_dir: Path,
    audio_root: Path,
    folds: Dict[int, Dict[str, List[Entry]]],
    classes: Sequence[str],
    about: Dict[str, object],
    overwrite: bool,
    progress: bool,
    inputs: Sequence[Path],
    rules: Rules,
) -> Dict[str, object]:
    """Check every path, audio file and leak (checks.py), then stage audio/, the fold folders, utterances.tsv and
    prepare.json (last), and swap them in whole: what prepare-emobox and prepare-table share. Converted audio found
    identical on two sides of a fold stops it there, with nothing swapped in."""
    used = list({e.utt_id: e for splits in folds.values() for rows in splits.values() for e in rows}.values())
    paths = source_paths(used, audio_root, rules)
    check_sources(used, paths, rules, progress)
    check_leaks(folds, used, paths, rules)
    summary = {
        **about,
        "audio_root": str(audio_root),
        "classes": list(classes),
        "utterances": len(used),
        "folds": {k: {split: dict(sorted(Counter(e.label for e in rows).items())) for split, rows in splits.items()} for k, splits in folds.items()},
    }
    with staged_dir(out_dir, overwrite, marker=PREPARE_INFO, inputs=inputs) as staging:
        samples, sources, reused, digests = convert_audio(used, paths, staging / AUDIO, out_dir / AUDIO, progress)
        check_same_content(folds, used, digests)
        atomic_write_json(staging / AUDIO / SOURCES, sources)
        write_layout(staging, out_dir.resolve() / AUDIO, folds, classes, samples)
        header = "utt_id\tlabel\traw_label\tduration\twav"
        rows = [f"{e.utt_id}\t{e.label}\t{e.raw}\t{samples[e.utt_id] / SAMPLE_RATE:.4f}\t{AUDIO}/{audio_name(e.utt_id)}" for e in used]
        atomic_write_lines(staging / LISTING, [header, *rows])
        summary["audio"] = {"converted": len(used) - reused, "reused": reused}
        atomic_write_json(staging / PREPARE_INFO, summary)
    return summary


def export_listing(iemocap_root: Path, listing_dir: Path, name: str = "demo", overwrite: bool = False) -> Dict[str, object]:
    """A corpus in IEMOCAP's layout (the demo's) described in EmoBox's: ``listing_dir/<name>/`` holds
    ``<name>.jsonl`` (raw codes as labels, wav paths relative to the corpus), ``label_map.json`` (exc merged into
    hap, as the folds have it) and leave-one-session-out ``fold_<k>`` lists; the audio stays where it is."""
    from fesa.corpora.iemocap import LABEL_OF_CODE, SESSIONS, scan_iemocap

    out = Path(listing_dir) / name
    utterances = scan_iemocap(Path(iemocap_root), progress=False)["utterances"]
    rows = [
        {"key": u.utt_id, "dataset": name, "wav": u.wav, "sample_rate": SAMPLE_RATE, "num_frame": u.num_samples, "length": round(u.duration, 4),
         "emo": u.code, "channel": 1, "speaker": u.speaker}
        for u in utterances
    ]  # fmt: skip
    session = {u.utt_id: u.session for u in utterances}
    with staged_dir(out, overwrite, marker="label_map.json", inputs=[iemocap_root]) as staging:
        _write_jsonl(staging / f"{name}.jsonl", rows)
        for k in SESSIONS:
            for split, keep in (("train", lambda s: s != k), ("test", lambda s: s == k)):
                _write_jsonl(staging / f"fold_{k}" / f"{name}_{split}_fold_{k}.jsonl", [r for r in rows if keep(session[r["key"]])])
        atomic_write_json(staging / "label_map.json", dict(LABEL_OF_CODE))
    return {"utterances": len(rows), "dir": str(out)}


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_lines(path, [json.dumps(r) for r in rows])
