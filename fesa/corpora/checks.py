"""What prepare-emobox and prepare-table check on the whole list of utterances before anything is written.

- every audio path lies inside --audio-root (compared lexically: ``..`` and absolute paths are resolved as text,
  symlinks inside the root are followed as the user laid them out), unless --allow-outside-root;
- the file is there, a file, readable, and its times fit it (an end past the file by more than TIME_TOLERANCE is
  refused, as is a span shorter than the encoder's receptive field);
- no audio is on two sides of a fold: the same file under two keys or spellings, a file and a slice of it, two
  overlapping slices (compared by the file's real path), and, once converted, the same samples under two names;
- a table's overlapping slices of one file are in one group.
"""

import hashlib
import os
import stat
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import soundfile as sf
from tqdm import tqdm

from fesa.corpora.iemocap import SAMPLE_RATE
from fesa.errors import FesaError

RECEPTIVE_FIELD = 400  # samples HuBERT's first frame needs at 16 kHz: checkpoints.HUBERT_GEOMETRY's, a layer above (a test keeps them equal)
TIME_TOLERANCE = 0.1  # seconds an end time may pass the end of its file (annotation rounding); more is a mistake
APART = (("train", "test"), ("valid", "test"), ("train", "valid"))  # splits that must share no audio

Folds = Dict[int, Dict[str, List["Entry"]]]
Pair = Tuple["Entry", "Entry"]


@dataclass(frozen=True)
class Entry:
    utt_id: str  # EmoBox's key; a table's path (and times)
    wav: str  # as the corpus gives it, relative to the audio root
    raw: str  # the corpus's own label
    label: str  # the class
    start: Optional[float]
    end: Optional[float]
    where: str  # file:line, for messages


@dataclass(frozen=True)
class Rules:
    """How a corpus format names things in its messages, and what the user allowed."""

    hint: str  # where relative audio paths start, for a file that is not there
    start: str = "start_time"  # the names of its time fields
    end: str = "end_time"
    allow_outside_root: bool = False
    group_column: Optional[str] = None  # a table's group column, and each utterance's group in it
    group_of: Optional[Dict[str, str]] = None


def source_paths(entries: Iterable[Entry], audio_root: Path, rules: Rules) -> Dict[str, Path]:
    """Each utterance's audio file, refused where it lies outside ``audio_root`` (unless allowed)."""
    sources = {}
    for e in entries:
        path = Path(os.path.normpath(audio_root / e.wav))
        if not rules.allow_outside_root and audio_root not in path.parents:
            raise FesaError(
                f"{e.where}: {e.wav} lies outside --audio-root {audio_root}: give paths relative to it (no '..' out of it, "
                "no absolute path elsewhere), or pass --allow-outside-root if the corpus really lives in several places"
            )
        sources[e.utt_id] = path
    return sources


def span(e: Entry, samples: int) -> Tuple[int, int]:
    """[first, last) at 16 kHz of the utterance in a file of ``samples`` (16 kHz) samples: its times, clipped."""
    first = 0 if e.start is None else min(round(e.start * SAMPLE_RATE), samples)
    last = samples if e.end is None else min(round(e.end * SAMPLE_RATE), samples)
    return first, last


def check_sources(entries: Sequence[Entry], sources: Dict[str, Path], rules: Rules, progress: bool) -> None:
    """Every audio file there, readable by soundfile, and long enough for its times: from headers, before any
    conversion starts."""
    for e in tqdm(entries, desc="checking audio", unit="file", disable=not progress):
        info = _header(sources[e.utt_id], e.where, rules.hint)
        _check_times(e, sources[e.utt_id], info.frames, info.samplerate, rules)


def _header(source: Path, where: str, hint: str) -> "sf._SoundFileInfo":
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        if os.path.islink(source):
            raise FesaError(f"{where}: {source} is a symlink to {os.readlink(source)}, which does not exist") from None
        raise FesaError(f"{where}: {source} does not exist ({hint})") from None
    except OSError as err:  # a symlink loop, a permission
        raise FesaError(f"{where}: cannot open {source}: {err.strerror or err}") from None
    if stat.S_ISDIR(mode):
        raise FesaError(f"{where}: {source} is a folder, not an audio file: give the path of the file itself")
    try:
        return sf.info(str(source))
    except (RuntimeError, sf.SoundFileError):
        raise FesaError(f"{where}: soundfile cannot read {source} (it reads wav, flac and ogg): convert it first, e.g. with ffmpeg") from None


def _check_times(e: Entry, source: Path, frames: int, rate: int, rules: Rules) -> None:
    seconds = frames / rate
    for name, value in ((rules.start, e.start), (rules.end, e.end)):
        if value is not None and value > seconds + TIME_TOLERANCE:
            unit = "; times are in seconds: was it given in milliseconds?" if value / 1000 <= seconds + TIME_TOLERANCE else ""
            raise FesaError(f"{e.where}: {name} {value:g} is past the end of {source}, which is {seconds:.3f} s long{unit}")
    first, last = span(e, -(-frames * SAMPLE_RATE // rate))
    if last - first < RECEPTIVE_FIELD:
        what = f" between its {rules.start} and {rules.end}" if e.start is not None or e.end is not None else ""
        raise FesaError(
            f"{e.where}: {source} holds {1000 * max(0, last - first) / SAMPLE_RATE:.1f} ms{what}, shorter than the encoder's receptive "
            f"field ({1000 * RECEPTIVE_FIELD / SAMPLE_RATE:g} ms): drop the row or give it a longer span"
        )


def overlapping(entries: Sequence[Entry], sources: Dict[str, Path]) -> List[Pair]:
    """Pairs of utterances sharing audio of one file (by its real path): the whole of it, or overlapping spans."""
    by_file: Dict[str, List[Entry]] = defaultdict(list)
    for e in entries:
        by_file[os.path.realpath(sources[e.utt_id])].append(e)
    pairs = []
    for same in by_file.values():
        same.sort(key=lambda e: (e.start or 0.0, listed_order(e)))
        for i, a in enumerate(same):
            for b in same[i + 1 :]:
                if (b.start or 0.0) >= (float("inf") if a.end is None else a.end):
                    break
                pairs.append((a, b))
    return pairs


def listed_order(e: Entry) -> Tuple[str, int]:
    """Where the corpus lists it (file, line): messages name two rows in the order the user reads them."""
    file, _, line = e.where.rpartition(":")
    return (file, int(line)) if line.isdigit() else (e.where, 0)


def shared_audio(a: Entry, b: Entry, sources: Dict[str, Path]) -> str:
    both_whole = a.start is None and a.end is None and b.start is None and b.end is None
    return f"{'the same file' if both_whole else 'overlapping parts of'} {os.path.realpath(sources[a.utt_id])}"


def check_folds_apart(folds: Folds, pairs: Iterable[Pair], what: Callable[[Entry, Entry], str]) -> None:
    """No pair on two sides of a fold (train, valid, test); ``what(a, b)`` says what they share."""
    pairs = list(pairs)
    for k, splits in folds.items():
        side = {e.utt_id: split for split, rows in splits.items() for e in rows}
        for a, b in pairs:
            sides = {side.get(a.utt_id), side.get(b.utt_id)}
            if None not in sides and len(sides) == 2:
                first, second = next((x, y) for x, y in APART if {x, y} == sides)
                raise FesaError(
                    f"{a.where} and {b.where}: {what(a, b)} in the {first} and the {second} split of fold {k}; a fold must not test on "
                    "(or choose its checkpoint by) what it learns from: drop one row, or keep both in one split"
                )


def check_groups_apart(pairs: Iterable[Pair], sources: Dict[str, Path], rules: Rules) -> None:
    """A table's overlapping spans of one file belong to one group: a recording is not two speakers' or sessions'."""
    if rules.group_of is None:
        return
    for a, b in pairs:
        ga, gb = rules.group_of[a.utt_id], rules.group_of[b.utt_id]
        if ga != gb:
            raise FesaError(
                f"{a.where} and {b.where}: {shared_audio(a, b, sources)} in two {rules.group_column} groups ({ga}, {gb}); "
                f"the same audio must be in one group: fix the {rules.group_column} column or the times"
            )


def check_leaks(folds: Folds, entries: Sequence[Entry], sources: Dict[str, Path], rules: Rules) -> None:
    """By file: the same file under two keys or spellings, or overlapping spans, on two sides of a fold."""
    pairs = overlapping(entries, sources)
    check_groups_apart(pairs, sources, rules)
    check_folds_apart(folds, pairs, lambda a, b: shared_audio(a, b, sources))


def file_digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def check_same_content(folds: Folds, entries: Sequence[Entry], digests: Dict[str, str]) -> None:
    """By content, once converted: the same samples (a copy, another format of one recording) on two sides of a fold."""
    by_digest: Dict[str, List[Entry]] = defaultdict(list)
    for e in sorted(entries, key=listed_order):
        by_digest[digests[e.utt_id]].append(e)
    chains = [(a, b) for same in by_digest.values() for a, b in zip(same, same[1:])]  # a chain: any split change shows in a link
    check_folds_apart(folds, chains, lambda a, b: "the same audio (identical once converted to 16 kHz mono)")
