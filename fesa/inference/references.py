"""Emotion segment truth from three sources, into the layout `fesa eder` reads (that of ZED's SpeechBrain recipe):
``{utt_id: {"wav": path, "duration": seconds, "emotion": [{"emo": label, "start": s, "end": s}, ...]}}``.

- ``zed``: ZED's annotation json (already this layout; ``{data_root}`` in wav paths is replaced by --audio-root);
- ``demo``: a demo corpus's ``fesa_demo_segments.tsv``: wavs and durations from the corpus around it, and
  IEMOCAP's merge of exc into hap, as the folds have it;
- ``tsv``: plain ``utt_id start end emotion`` lines (a header line is skipped); durations from a fairseq
  manifest (--manifest) or the wavs under --audio-root (every utterance must be found there), else the last
  event's end (said in a warning).

What is returned has been checked as a reference is (``eder.check_segments``). :func:`segment_truth` reads the
true segments a fold's scoring and alignment use (``--reference``, an experiment's ``segments:``).
"""

import logging
from pathlib import Path
from typing import Dict, List, Optional

import soundfile as sf

from fesa.corpora.demo import DEMO_SEGMENTS_FILE
from fesa.corpora.iemocap import LABEL_OF_CODE, LISTING, SPLITS
from fesa.errors import FesaError
from fesa.files import atomic_write_json
from fesa.inference.eder import check_segments, read_segments_json
from fesa.segments import Segment, read_segment_lines
from fesa_fairseq.data.files import read_lines, read_manifest

logger = logging.getLogger(__name__)


def convert_references(source: Path, fmt: str = "auto", manifest: Optional[Path] = None, audio_root: Optional[Path] = None) -> Dict[str, dict]:
    source = Path(source)
    if source.is_dir():
        source = source / DEMO_SEGMENTS_FILE
    fmt = _guess(source) if fmt == "auto" else fmt
    if audio_root is not None and not Path(audio_root).is_dir():
        raise FesaError(f"--audio-root {audio_root} is not a folder")
    if fmt == "zed":
        return _zed(source, audio_root)
    if fmt == "demo":
        data = _from_tsv(source, _wavs_under(source.parent), labels=LABEL_OF_CODE)
    else:
        wavs = _manifest_wavs(manifest) if manifest else _wavs_under(audio_root) if audio_root else None
        data = _from_tsv(source, wavs, labels={})
    return check_segments(data, str(source), reference=True)


def _guess(source: Path) -> str:
    if source.suffix == ".json":
        return "zed"
    if source.name == DEMO_SEGMENTS_FILE:
        return "demo"
    if source.suffix == ".tsv":
        return "tsv"
    raise FesaError(f"{source}: cannot tell its format from its name; say --format zed, demo or tsv")


def _zed(source: Path, audio_root: Optional[Path]) -> Dict[str, dict]:
    data = read_segments_json(source, reference=True)
    if audio_root is not None:
        for entry in data.values():
            entry["wav"] = str(entry.get("wav", "")).replace("{data_root}", str(audio_root))
    return data


def _from_tsv(source: Path, wavs: Optional[Dict[str, Path]], labels: Dict[str, str]) -> Dict[str, dict]:
    """``wavs`` None: no audio to take durations from, so each utterance lasts until its last event ends."""
    if wavs is None:
        logger.warning("%s: no --manifest or --audio-root, so each utterance is taken to end with its last event", source)
    return _entries(source, read_segment_lines(source), wavs, labels)


def _entries(source: Path, spans: Dict[str, List[Segment]], wavs: Optional[Dict[str, Path]], labels: Dict[str, str]) -> Dict[str, dict]:
    out = {}
    for utt, segments in spans.items():
        events = [{"emo": labels.get(s.label, s.label), "start": s.start, "end": s.end} for s in segments]
        wav = wavs.get(utt) if wavs is not None else None
        if wavs is not None and wav is None:
            raise FesaError(f"{source}: utterance {utt} has no wav named {utt}.wav in the audio given (--manifest or --audio-root)")
        duration = sf.info(str(wav)).duration if wav is not None else max(e["end"] for e in events)
        out[utt] = {"wav": str(wav) if wav is not None else "", "duration": round(duration, 4), "emotion": events}
    return out


def _wavs_under(root: Path) -> Dict[str, Path]:
    return {p.stem: p for p in sorted(Path(root).rglob("*.wav"))}


def _manifest_wavs(manifest: Path) -> Dict[str, Path]:
    root, rows = read_manifest(manifest)
    return {Path(rel).stem: Path(root) / rel for rel, _ in rows}


def write_references(data: Dict[str, dict], out: Path) -> None:
    atomic_write_json(out, data, indent=1)


def segment_truth(reference: Optional[Path], fold_dir: Path) -> Optional[Dict[str, dict]]:
    """The true segments a fold is measured against (None without ``reference``): fesa eder's json as it is, or
    ``utt_id start end emotion`` lines (a demo corpus's fesa_demo_segments.tsv, your own), of which the utterances of
    the fold's manifests are kept, their durations read from their wavs and their labels made classes as the fold's
    preparation made the utterances' (its utterances.tsv: IEMOCAP's exc into hap, an EmoBox label_map)."""
    if reference is None:
        return None
    reference, fold_dir = Path(reference), Path(fold_dir)
    if reference.suffix == ".json":
        return read_segments_json(reference, reference=True)
    wavs = {}
    for manifest in (fold_dir / f"{split}.tsv" for split in SPLITS):
        wavs.update(_manifest_wavs(manifest) if manifest.is_file() else {})
    spans = {utt: segments for utt, segments in read_segment_lines(reference).items() if utt in wavs}
    if not spans:
        logger.warning("%s names none of the utterances of %s: no frame-level truth", reference, fold_dir)
        return {}
    return check_segments(_entries(reference, spans, wavs, preparation_classes(fold_dir)), str(reference), reference=True)


def preparation_classes(fold_dir: Path) -> Dict[str, str]:
    """Raw label -> class, as the preparation of the fold made them (the utterances.tsv beside the fold folders:
    IEMOCAP's code, EmoBox's and a table's raw_label); empty for folds prepared elsewhere (labels stay as they are)."""
    listing = fold_dir.parent / LISTING
    if not listing.is_file():
        return {}
    header, *rows = [line.split("\t") for line in read_lines(listing)]
    raw = next((name for name in ("code", "raw_label") if name in header), None)
    if raw is None or "label" not in header:
        return {}
    at, to = header.index(raw), header.index("label")
    return {row[at]: row[to] for row in rows if len(row) > max(at, to)}
