"""`fesa predict`: a fine-tuned classifier over audio files, folders and manifests.

Writes under the output folder, each file atomically:
    utterances.tsv      utt_id, path, duration, label, p_<class> per class
    segments.json       {utt_id: {"wav", "duration", "emotion": [{"emo", "start", "end"}]}} (the ZED recipe's layout)
    frames/<utt>.npz    with --frames: posteriors (frames × classes, 50 Hz), pooling_weights, labels
    timelines/<utt>.png with --plot N: the first N inputs, over their first PLOT_SECONDS
A file that cannot be read is reported and skipped (``strict`` stops at the first); when none can be, nothing is
written, so the outputs of an earlier run stay as they were.

Utterance ids are the file names without extension; where two inputs share one, each takes as many of its parent
folders as tell them apart (``a/x`` and ``b/x``), and the same id names it in every output. Control characters
(a tab or a line break in a file name) are written as ``\\xNN`` in the tsv and in ids.
"""

import io
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from tqdm import tqdm

from fesa.errors import FesaError, user_errors
from fesa.files import atomic_write_bytes, atomic_write_json, atomic_write_lines
from fesa.inference.recognizer import EmotionRecognizer, Prediction
from fesa.options import SEGMENTS_FILE
from fesa.plots import plot_prediction
from fesa.segments import Segment
from fesa_fairseq.data.audio import AudioSource
from fesa_fairseq.data.files import read_manifest

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
PLOT_SECONDS = 60.0


@dataclass
class Input:
    utt_id: str
    path: Path


def collect_inputs(items: Sequence[str]) -> List[Input]:
    """Audio files, folders (searched recursively for wav, flac, ogg) and fairseq .tsv manifests, in order."""
    paths: List[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES and f.is_file())
        elif p.suffix == ".tsv":
            root, rows = read_manifest(p)
            paths += [Path(root) / rel for rel, _ in rows]
        elif p.exists() or p.suffix.lower() in AUDIO_SUFFIXES:
            paths.append(p)
        else:
            raise FesaError(f"{item}: no such file or folder")
    paths = _once_each(paths)
    if not paths:
        raise FesaError(f"no audio found in {', '.join(items)} (wav, flac, ogg, or a .tsv manifest)")
    return [Input(utt_id, path) for utt_id, path in zip(utterance_ids(paths), paths)]


def _once_each(paths: Sequence[Path]) -> List[Path]:
    seen, out = set(), []
    for path in paths:
        real = path.resolve()
        if real in seen:
            logger.warning("%s is given more than once: scored once", path)
            continue
        seen.add(real)
        out.append(path)
    return out


def utterance_ids(paths: Sequence[Path]) -> List[str]:
    """File names without extension; inputs that share one take parent folders until they differ (the whole path,
    then the extension, at the most: distinct files always get distinct ids)."""
    candidates = [_id_candidates(path.resolve()) for path in paths]
    level = [0] * len(paths)
    while True:
        ids = [c[i] for c, i in zip(candidates, level)]
        counts = Counter(ids)
        clashing = [j for j, utt in enumerate(ids) if counts[utt] > 1 and level[j] + 1 < len(candidates[j])]
        if not clashing:
            return [escape(utt) for utt in ids]
        for j in clashing:
            level[j] += 1


def _id_candidates(real: Path) -> List[str]:
    folders = real.parent.relative_to(real.anchor).parts
    nested = ["/".join(folders[len(folders) - depth :] + (real.stem,)) for depth in range(len(folders) + 1)]
    return nested + [real.relative_to(real.anchor).as_posix()]


def escape(text: str) -> str:
    """Control characters (tab, line breaks) as \\xNN, so that a name stays one tsv field on one line."""
    return re.sub(r"[\x00-\x1f\x7f]", lambda m: f"\\x{ord(m.group()):02x}", text)


def predict_files(
    recognizer: EmotionRecognizer,
    inputs: Sequence[Input],
    out: Path,
    frames: bool = False,
    plot: int = 0,
    reference: Optional[Mapping[str, dict]] = None,
    strict: bool = False,
    progress: bool = True,
) -> Dict[str, object]:
    labels = recognizer.labels
    rows = ["\t".join(["utt_id", "path", "duration", "label", *(f"p_{label}" for label in labels)])]
    segments: Dict[str, dict] = {}
    failed: List[Tuple[str, str]] = []
    audio_seconds, started, said = 0.0, time.perf_counter(), set()
    results = recognizer.predict_many(_sources(recognizer, inputs, said))
    for i, (item, pred) in enumerate(tqdm(zip(inputs, results), desc="predicting", unit="file", total=len(inputs), disable=not progress)):
        if isinstance(pred, user_errors()):
            if strict:
                raise pred
            logger.error("skipped %s: %s", item.path, pred)
            failed.append((str(item.path), str(pred)))
            continue
        audio_seconds += pred.duration
        rows.append("\t".join([item.utt_id, escape(str(item.path)), f"{pred.duration:.3f}", pred.label, *(f"{p:.4f}" for p in pred.probabilities)]))
        segments[item.utt_id] = pred.diarization(str(item.path))
        if frames:
            _write_frames(out / "frames" / f"{item.utt_id}.npz", pred)
        if i < plot:
            truth = (reference or {}).get(item.utt_id, {}).get("emotion", [])
            _plot(out / "timelines" / f"{item.utt_id}.png", item, recognizer.source(item.path), pred, truth)
    if not segments:  # nothing scored: an earlier run's results stay as they were
        raise FesaError(f"none of the {len(inputs)} inputs could be read (the first: {failed[0][0]}: {failed[0][1]}); nothing written")
    atomic_write_lines(out / "utterances.tsv", rows)
    atomic_write_json(out / SEGMENTS_FILE, segments, indent=1)
    seconds = time.perf_counter() - started
    return {"files": len(segments), "skipped": failed, "audio_seconds": audio_seconds, "seconds": seconds}


def _sources(recognizer: EmotionRecognizer, inputs: Sequence[Input], said: set) -> Iterator[Union[AudioSource, Exception]]:
    """Each input's audio as the model reads it, opened when the scorer asks for it, or why it cannot be."""
    for item in inputs:
        try:
            source = recognizer.source(item.path)
        except user_errors() as e:
            yield e
            continue
        _say_conversion(source, said)
        yield source


def _say_conversion(source: AudioSource, said: set) -> None:
    key = (source.native_rate, source.channels)
    if source.converted and key not in said:
        said.add(key)
        logger.info(
            "audio at %d Hz with %d channel(s): averaged to mono and resampled to %d Hz (scipy resample_poly)",
            source.native_rate,
            source.channels,
            source.rate,
        )


def _write_frames(path: Path, pred: Prediction) -> None:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        posteriors=pred.frame_posteriors.astype(np.float32),
        pooling_weights=pred.pooling_weights.astype(np.float32),
        labels=np.array(pred.labels),
        frame_rate=np.float32(pred.frame_rate),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())


def _plot(path: Path, item: Input, source: AudioSource, pred: Prediction, truth: Sequence[Mapping]) -> None:
    samples = min(source.samples, int(PLOT_SECONDS * source.rate))
    frames = int(samples / source.rate * pred.frame_rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_prediction(
        source.read(0, samples),
        source.rate,
        pred.frame_posteriors[:frames],
        pred.pooling_weights[:frames],
        pred.labels,
        pred.segments,
        [Segment.of_event(e) for e in truth],
        path,
        f"{item.utt_id}: {pred.label} ({pred.probabilities.max():.2f})",
    )
