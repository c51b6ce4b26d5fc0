"""Emotion segment truth from three sources, into the layout `fesa eder` reads (that of ZED's SpeechBrain recipe):
``{utt_id: {"wav": path, "duration": seconds, "emotion": [{"emo": label, "start": s, "end": s}, ...]}}``.

- ``zed``: ZED's annotation json (already this layout; ``{data_root}`` in wav paths is replaced by --audio-root);
- ``demo``: a demo corpus's ``fesa_demo_segments.tsv``: wavs and durations from the corpus around it, and
  IEMOCAP's merge of exc into hap, as the folds have it;
- ``tsv``: plain ``utt_id start end emotion`` lines (a header line is skipped); durations from a fairseq
  manifest (--manifest) or the wavs under --audio-root (every utterance must be found there), else the last
  event's end (said in a warning).

What is returned has been checked as a reference is (``eder.check_segments``).
"""

import logging
from pathlib import Path
from typing import Dict, Optional

import soundfile as sf

from fesa.corpora.demo import SEGMENTS_FILE, find_demo_root
from fesa.corpora.iemocap import LABEL_OF_CODE
from fesa.errors import FesaError
from fesa.files import atomic_write_json
from fesa.inference.eder import check_segments, read_segments_json
from fesa.options import SEGMENT_FORMATS
from fesa.segments import read_segment_lines
from fesa_fairseq.data.files import read_manifest

logger = logging.getLogger(__name__)

FORMATS = SEGMENT_FORMATS


def convert_references(source: Path, fmt: str = "auto", manifest: Optional[Path] = None, audio_root: Optional[Path] = None) -> Dict[str, dict]:
    source = Path(source)
    if source.is_dir():
        source = source / SEGMENTS_FILE
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
    if source.name == SEGMENTS_FILE:
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
    events = {
        utt: [{"emo": labels.get(s.label, s.label), "start": s.start, "end": s.end} for s in spans]
        for utt, spans in read_segment_lines(source).items()
    }
    if wavs is None:
        logger.warning("%s: no --manifest or --audio-root, so each utterance is taken to end with its last event", source)
    out = {}
    for utt, evs in events.items():
        wav = wavs.get(utt) if wavs is not None else None
        if wavs is not None and wav is None:
            raise FesaError(f"{source}: utterance {utt} has no wav named {utt}.wav in the audio given (--manifest or --audio-root)")
        duration = sf.info(str(wav)).duration if wav is not None else max(e["end"] for e in evs)
        out[utt] = {"wav": str(wav) if wav is not None else "", "duration": round(duration, 4), "emotion": evs}
    return out


def _wavs_under(root: Path) -> Dict[str, Path]:
    return {p.stem: p for p in sorted(Path(root).rglob("*.wav"))}


def _manifest_wavs(manifest: Path) -> Dict[str, Path]:
    root, rows = read_manifest(manifest)
    return {Path(rel).stem: Path(root) / rel for rel, _ in rows}


def write_references(data: Dict[str, dict], out: Path) -> None:
    atomic_write_json(out, data, indent=1)


def segment_truth(reference: Optional[Path], fold_dir: Path, split: str = "test") -> Optional[Dict[str, dict]]:
    """True segments: from a file in fesa eder's layout, else from the demo corpus the fold's split was made from
    (it carries its segments), else None."""
    if reference:
        return read_segments_json(Path(reference), reference=True)
    root = find_demo_root(Path(fold_dir) / f"{split}.tsv")
    return convert_references(root, "demo") if root else None
