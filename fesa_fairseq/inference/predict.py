"""`fesa predict`: a fine-tuned classifier over audio files, folders and manifests.

Writes under the output folder, each file atomically:
    utterances.tsv      path, duration, label, p_<class> per class
    segments.json       {utt_id: {"wav", "duration", "emotion": [{"emo", "start", "end"}]}} (the ZED recipe's layout)
    frames/<utt>.npz    with --frames: posteriors (frames × classes, 50 Hz), pooling_weights, labels
    timelines/<utt>.png with --plot N: the first N inputs, over their first PLOT_SECONDS
A file that cannot be read is reported and skipped (``strict`` stops at the first).
"""

import io
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from fesa_fairseq.data.audio import AudioSource
from fesa_fairseq.data.files import atomic_write_bytes, atomic_write_lines, atomic_write_text, read_manifest
from fesa_fairseq.errors import FesaError
from fesa_fairseq.inference.recognizer import SAMPLE_RATE, EmotionRecognizer, Prediction
from fesa_fairseq.plots import plot_prediction

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
    inputs, seen = [], {}
    for path in paths:
        stem = path.stem
        seen[stem] = seen.get(stem, 0) + 1
        inputs.append(Input(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}", path))
    if not inputs:
        raise FesaError(f"no audio found in {', '.join(items)} (wav, flac, ogg, or a .tsv manifest)")
    return inputs


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
    out.mkdir(parents=True, exist_ok=True)
    labels = recognizer.labels
    rows = ["\t".join(["path", "duration", "label", *(f"p_{label}" for label in labels)])]
    segments: Dict[str, dict] = {}
    failed: List[Tuple[str, str]] = []
    audio_seconds, started, said = 0.0, time.perf_counter(), set()
    for i, item in enumerate(tqdm(inputs, desc="predicting", unit="file", disable=not progress)):
        try:
            source = AudioSource(item.path)
            _say_conversion(source, said)
            pred = recognizer.predict_source(source)
        except FesaError as e:
            if strict:
                raise
            logger.error("skipped %s: %s", item.path, e)
            failed.append((str(item.path), str(e)))
            continue
        audio_seconds += pred.duration
        rows.append("\t".join([str(item.path), f"{pred.duration:.3f}", pred.label, *(f"{p:.4f}" for p in pred.probabilities)]))
        segments[item.utt_id] = pred.diarization(str(item.path))
        if frames:
            _write_frames(out / "frames" / f"{item.utt_id}.npz", pred)
        if i < plot:
            truth = (reference or {}).get(item.utt_id, {}).get("emotion", [])
            _plot(out / "timelines" / f"{item.utt_id}.png", item, source, pred, truth)
    atomic_write_lines(out / "utterances.tsv", rows)
    atomic_write_text(out / "segments.json", json.dumps(segments, indent=1) + "\n")
    seconds = time.perf_counter() - started
    return {"files": len(segments), "skipped": failed, "audio_seconds": audio_seconds, "seconds": seconds}


def _say_conversion(source: AudioSource, said: set) -> None:
    key = (source.native_rate, source.channels)
    if source.converted and key not in said:
        said.add(key)
        logger.info(
            "audio at %d Hz with %d channel(s): averaged to mono and resampled to %d Hz (scipy resample_poly)",
            source.native_rate,
            source.channels,
            SAMPLE_RATE,
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
    samples = min(source.samples, int(PLOT_SECONDS * SAMPLE_RATE))
    frames = int(samples / SAMPLE_RATE * pred.frame_rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot_prediction(
        source.read(0, samples),
        SAMPLE_RATE,
        pred.frame_posteriors[:frames],
        pred.pooling_weights[:frames],
        pred.labels,
        [(s.start, s.end, s.label) for s in pred.segments],
        [(float(e["start"]), float(e["end"]), str(e["emo"])) for e in truth],
        path,
        f"{item.utt_id}: {pred.label} ({pred.probabilities.max():.2f})",
    )
