"""IEMOCAP → leave-one-session-out manifests, as the speech emotion literature uses them.

Four classes: neu, hap (hap + exc merged), ang, sad; every other code (fru, sur, fea, dis, oth, xxx) is
dropped. Fold k tests on every kept utterance of Session k; its train and valid splits come from the other
four sessions, valid being a deterministic label-stratified holdout, so that no checkpoint is ever chosen
on the test session.

What is read, per session: ``SessionN/dialog/EmoEvaluation/<dialog>.txt`` (only the files directly in that
folder; its sub-folders Categorical/, Attribute/, Self-evaluation/ hold per-annotator files), whose turn
lines look like ``[6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]``, and
the wav of each kept turn at ``SessionN/sentences/wav/<dialog>/<utt_id>.wav``. macOS ``._*`` twins are
ignored everywhere.
"""

import logging
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from fesa.errors import FesaError
from fesa.files import atomic_write_json, atomic_write_lines, check_output_dir, staged_dir, write_manifest
from fesa.options import HOLDOUT
from fesa_fairseq.data.audio import check_audio

logger = logging.getLogger(__name__)

SESSIONS = (1, 2, 3, 4, 5)
CLASSES = ("neu", "hap", "ang", "sad")
LABEL_OF_CODE = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
SAMPLE_RATE = 16000
SPLITS = ("train", "valid", "test")
PREPARE_INFO = "prepare.json"  # written last: the mark of a manifest folder this command wrote
LISTING = "utterances.tsv"  # beside the fold folders: every utterance kept, its raw label (code) and class
# What a complete IEMOCAP release yields under this protocol (the literature's 5,531 utterances).
KNOWN_LABEL_TOTALS = {"neu": 1708, "hap": 1636, "ang": 1103, "sad": 1084}
KNOWN_SESSION_TOTALS = {1: 1085, 2: 1023, 3: 1151, 4: 1031, 5: 1241}

_TURN = re.compile(r"^\[\s*(?P<start>\d+(?:\.\d+)?)\s*-\s*(?P<end>\d+(?:\.\d+)?)\s*\]\s+(?P<utt>\S+)\s+(?P<code>\S+)\s+\[")


@dataclass(frozen=True)
class Utterance:
    utt_id: str
    session: int
    speaker: str
    code: str
    label: str
    wav: str  # relative to the IEMOCAP root
    num_samples: int

    @property
    def duration(self) -> float:
        return self.num_samples / SAMPLE_RATE


@dataclass(frozen=True)
class Turn:
    utt_id: str
    code: str
    start: float
    end: float


def parse_evaluation_file(path: Path) -> List[Turn]:
    """The turn lines of one EmoEvaluation file; header, annotator and blank lines are skipped."""
    try:
        # Annotator comments may hold stray bytes; they are never used, so decoding must not fail on them.
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise FesaError(f"cannot read evaluation file {path}: {e.strerror}") from e
    turns = []
    for line in text.splitlines():
        m = _TURN.match(line)
        if m:
            turns.append(Turn(m["utt"], m["code"].lower(), float(m["start"]), float(m["end"])))
    if not turns:
        raise FesaError(f"evaluation file {path} has no turn lines like '[6.29 - 8.23]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[...]'")
    return turns


def speaker_of(utt_id: str) -> str:
    """Ses01F_impro01_M003 → Ses01M: the session's prefix and the gender letter of the turn's speaker."""
    return utt_id[:5] + utt_id.rsplit("_", 1)[-1][0]


def evaluation_files(root: Path, session: int) -> List[Path]:
    folder = root / f"Session{session}" / "dialog" / "EmoEvaluation"
    if not folder.is_dir():
        raise FesaError(f"missing folder {folder}: is {root} an IEMOCAP release root (holding Session1..Session5)?")
    return sorted(p for p in folder.glob("*.txt") if p.is_file() and not p.name.startswith("._"))


def scan_iemocap(root: Path, progress: bool = True) -> Dict[str, object]:
    """Every kept utterance with its wav's real sample count, and the counts of dropped codes."""
    root = Path(root)
    if not root.is_dir():
        raise FesaError(f"IEMOCAP root {root} does not exist or is not a folder")
    pending = []
    dropped: Counter = Counter()
    for session in SESSIONS:
        files = evaluation_files(root, session)
        kept_before = len(pending)
        for ev in files:
            for turn in parse_evaluation_file(ev):
                if turn.code not in LABEL_OF_CODE:
                    dropped[turn.code] += 1
                    continue
                wav = Path(f"Session{session}", "sentences", "wav", ev.stem, f"{turn.utt_id}.wav")
                pending.append((session, turn, wav, ev))
        if len(pending) == kept_before:
            raise FesaError(f"Session{session} has no neu/hap/exc/ang/sad turn in {root / f'Session{session}/dialog/EmoEvaluation'}")
    seen: Dict[str, Path] = {}
    utterances = []
    for session, turn, wav, ev in tqdm(pending, desc="reading wav headers", unit="wav", disable=not progress):
        if turn.utt_id in seen:
            raise FesaError(f"utterance {turn.utt_id} appears twice: in {seen[turn.utt_id]} and in {ev}")
        seen[turn.utt_id] = ev
        n = check_audio(root / wav, SAMPLE_RATE, where=f"{ev}: ")
        utterances.append(Utterance(turn.utt_id, session, speaker_of(turn.utt_id), turn.code, LABEL_OF_CODE[turn.code], wav.as_posix(), n))
    return {"utterances": sorted(utterances, key=lambda u: u.utt_id), "dropped": dict(sorted(dropped.items()))}


def stratified_holdout(utterances: Sequence[Utterance], fraction: float, seed: int) -> set:
    """Ids of a deterministic holdout of `fraction` of each label (at least one where a label has two)."""
    by_label: Dict[str, List[str]] = defaultdict(list)
    for u in utterances:
        by_label[u.label].append(u.utt_id)
    held = set()
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        random.Random(f"{seed}-{label}").shuffle(ids)
        n = round(fraction * len(ids))
        if fraction > 0 and n == 0 and len(ids) >= 2:
            n = 1
        held.update(ids[:n])
    return held


def speaker_holdout(utterances: Sequence, fraction: float, seed: int, speaker: Callable[[Any], str]) -> set:
    """Ids of the utterances of whole speakers held out: speakers in a seeded order, each time the one that brings the
    held-out counts of every label closest to ``fraction`` of them, while that gets closer (at least one speaker
    where there are two; never all of them)."""
    by_speaker: Dict[str, List[Any]] = defaultdict(list)
    for u in utterances:
        by_speaker[speaker(u)].append(u)
    target = {label: fraction * n for label, n in Counter(u.label for u in utterances).items()}
    counts = {s: Counter(u.label for u in rows) for s, rows in by_speaker.items()}
    speakers = sorted(by_speaker)
    random.Random(f"{seed}-speakers").shuffle(speakers)

    def distance(held: Counter) -> float:
        return sum(abs(held[label] - want) for label, want in target.items())

    chosen: List[str] = []
    held: Counter = Counter()
    while fraction > 0 and len(chosen) < len(speakers) - 1:
        best = min((s for s in speakers if s not in chosen), key=lambda s: distance(held + counts[s]))
        if chosen and distance(held + counts[best]) >= distance(held):
            break
        chosen.append(best)
        held += counts[best]
    return {u.utt_id for s in chosen for u in by_speaker[s]}


def holdout_split(utterances: Sequence, fraction: float, seed: int, speaker: Optional[Callable[[Any], str]] = None) -> Tuple[list, list]:
    """(train, valid): a holdout of `utterances` as valid and the rest as train, each in its order; by utterance
    (stratified_holdout), or by whole speakers where ``speaker`` names each utterance's (speaker_holdout)."""
    held = stratified_holdout(utterances, fraction, seed) if speaker is None else speaker_holdout(utterances, fraction, seed, speaker)
    return [u for u in utterances if u.utt_id not in held], [u for u in utterances if u.utt_id in held]


def make_folds(
    utterances: Sequence[Utterance], valid_fraction: float, seed: int, validation: str = HOLDOUT.validation
) -> Dict[int, Dict[str, List[Utterance]]]:
    if not 0.0 <= valid_fraction < 1.0:
        raise FesaError(f"--valid-fraction must be in [0, 1), got {valid_fraction}")
    speaker = _speaker_of_utterance if validation == "speakers" else None
    folds = {}
    for k in SESSIONS:
        train, valid = holdout_split([u for u in utterances if u.session != k], valid_fraction, seed + k, speaker)
        folds[k] = {"train": train, "valid": valid, "test": [u for u in utterances if u.session == k]}
    return folds


def _speaker_of_utterance(u: Utterance) -> str:
    return u.speaker


def count_table(utterances: Sequence[Utterance]) -> Dict[int, Counter]:
    table: Dict[int, Counter] = {s: Counter() for s in SESSIONS}
    for u in utterances:
        table[u.session][u.label] += 1
    return table


def known_total_mismatches(utterances: Sequence[Utterance]) -> List[str]:
    table = count_table(utterances)
    problems = []
    for session, expected in KNOWN_SESSION_TOTALS.items():
        found = sum(table[session].values())
        if found != expected:
            problems.append(f"Session{session}: {found} utterances, a full release has {expected}")
    labels = Counter(u.label for u in utterances)
    for label, expected in KNOWN_LABEL_TOTALS.items():
        if labels[label] != expected:
            problems.append(f"{label}: {labels[label]} utterances, a full release has {expected}")
    return problems


def dictionary_lines(split: Sequence[Utterance]) -> List[str]:
    """fairseq dictionary format in the fixed class order, counted on the training split (class weights)."""
    counts = Counter(u.label for u in split)
    return [f"{label} {counts[label]}" for label in CLASSES]


def write_folds(out_dir: Path, root: Path, folds: Dict[int, Dict[str, List[Utterance]]]) -> None:
    for k, splits in folds.items():
        fold_dir = out_dir / f"fold{k}"
        for split in SPLITS:
            rows = splits[split]
            write_manifest(fold_dir / f"{split}.tsv", root, [(u.wav, u.num_samples) for u in rows])
            atomic_write_lines(fold_dir / f"{split}.emo", [u.label for u in rows])
        atomic_write_lines(fold_dir / "dict.emo.txt", dictionary_lines(splits["train"]))


def write_listing(path: Path, utterances: Sequence[Utterance]) -> None:
    header = "utt_id\tsession\tspeaker\tlabel\tcode\tduration\twav"
    atomic_write_lines(
        path,
        [header] + [f"{u.utt_id}\t{u.session}\t{u.speaker}\t{u.label}\t{u.code}\t{u.duration:.4f}\t{u.wav}" for u in utterances],
    )


def prepare_iemocap(
    root: Path,
    out_dir: Path,
    valid_fraction: float = HOLDOUT.valid_fraction,
    seed: int = HOLDOUT.seed,
    check_totals: bool = True,
    validation: str = HOLDOUT.validation,
    progress: bool = True,
    overwrite: bool = False,
) -> Dict[str, object]:
    """Scan, check and write every fold. Nothing is written until the whole corpus has been read.

    ``check_totals`` compares with the known totals of a full release (the caller turns it off for other corpora).
    Every file goes to a staging folder that replaces `out_dir` whole once ``prepare.json`` (written last) is
    there: existing manifests are replaced only with `overwrite`, and never half.
    """
    root = Path(root).resolve()
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite, PREPARE_INFO, inputs=[root])
    scan = scan_iemocap(root, progress=progress)
    utterances: List[Utterance] = scan["utterances"]
    folds = make_folds(utterances, valid_fraction, seed, validation)
    mismatches = known_total_mismatches(utterances) if check_totals else []
    for problem in mismatches:
        logger.warning("not a complete IEMOCAP release? %s", problem)
    summary = {
        "root": str(root),
        "valid_fraction": valid_fraction,
        "seed": seed,
        **({"validation": validation} if validation != HOLDOUT.validation else {}),
        "utterances": len(utterances),
        "dropped_codes": scan["dropped"],
        "per_session": {s: dict(sorted(c.items())) for s, c in count_table(utterances).items()},
        "folds": {k: {split: len(rows) for split, rows in splits.items()} for k, splits in folds.items()},
        "known_totals_checked": check_totals,
        "known_total_mismatches": mismatches,
    }
    with staged_dir(out_dir, overwrite, marker=PREPARE_INFO, inputs=[root]) as staging:
        write_folds(staging, root, folds)
        write_listing(staging / LISTING, utterances)
        atomic_write_json(staging / PREPARE_INFO, summary)
    summary["table"] = count_table(utterances)
    return summary


def format_count_table(table: Dict[int, Counter]) -> str:
    """Sessions × labels with totals, as plain aligned text."""
    header = ["session", *CLASSES, "total"]
    rows = [[f"Session{s}", *(str(table[s][c]) for c in CLASSES), str(sum(table[s].values()))] for s in SESSIONS]
    totals = [sum(table[s][c] for s in SESSIONS) for c in CLASSES]
    rows.append(["all", *(str(t) for t in totals), str(sum(totals))])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in [header, *rows])
