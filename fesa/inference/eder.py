"""Emotion Diarization Error Rate, as SpeechBrain's ``speechbrain/utils/EDER.py`` defines it.

Per utterance: the predicted segments are merged where neighbours share an emotion and touch or overlap, then
any remaining overlap between neighbours is split evenly between them; the reference is the annotated events
with the time between them neutral. EDER = 1 - (duration where prediction and reference agree) / duration,
averaged over utterances.

SpeechBrain's reference allows one event per utterance. Here the events may be several (the demo corpus has
one per phrase): they are taken in time order, and every stretch no event covers is neutral, so that with one
event the reference is exactly SpeechBrain's. SpeechBrain compares first letters (its predictions are 'n',
'a', 'h', 's' against 'angry', ...): ``first_letter=True`` does the same; by default labels compare whole.

Segment files are checked when read (times finite, 0 <= start < end <= duration, reference events not
overlapping) and their events put in time order, so that the order of a file never changes a score.

Reference and hypothesis files share the layout of the ZED corpus's SpeechBrain recipe:
``{utt_id: {"wav": path, "duration": seconds, "emotion": [{"emo": label, "start": s, "end": s}, ...]}}``.
"""

import json
import math
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from fesa.errors import FesaError
from fesa.options import NEUTRAL
from fesa_fairseq.data.files import read_text

Span = Tuple[float, float, str]


def merge_adjacent(spans: Sequence[Span]) -> List[Span]:
    """Neighbours with the same label that touch or overlap become one (SpeechBrain's merge_ssegs_same_emotion_adjacent)."""
    out: List[List] = []
    for start, end, label in spans:
        if out and start <= out[-1][1] and label == out[-1][2]:
            out[-1][1] = end
        else:
            out.append([start, end, label])
    return [tuple(s) for s in out]


def distribute_overlap(spans: Sequence[Span]) -> List[Span]:
    """Overlapping neighbours each give up half of the overlap (SpeechBrain's distribute_overlap)."""
    out = [list(s) for s in spans]
    for i in range(len(out) - 1):
        overlap = out[i][1] - out[i + 1][0]
        if overlap >= 0:
            out[i][1] -= overlap / 2.0
            out[i + 1][0] += overlap / 2.0
    return [tuple(s) for s in out]


def reference_spans(events: Sequence[Mapping], duration: float, neutral: str) -> List[Span]:
    """The annotated events in time order, and neutral wherever none is."""
    spans: List[Span] = []
    at = 0.0
    for e in sorted(events, key=lambda e: float(e["start"])):
        start, end = float(e["start"]), float(e["end"])
        if start > at:
            spans.append((at, start, neutral))
        spans.append((start, end, str(e["emo"])))
        at = max(at, end)
    if at < duration:
        spans.append((at, duration, neutral))
    return spans


def utterance_eder(hypothesis: Sequence[Span], reference: Sequence[Span], duration: float, first_letter: bool = False) -> float:
    key = (lambda label: label[:1]) if first_letter else (lambda label: label)
    hyp = merge_adjacent(sorted(hypothesis))
    if len(hyp) != 1:
        hyp = distribute_overlap(hyp)
    agree = sum(
        max(0.0, min(r_end, h_end) - max(r_start, h_start))
        for r_start, r_end, r_label in reference
        for h_start, h_end, h_label in hyp
        if key(h_label) == key(r_label)
    )
    return 1.0 - agree / duration


# Times in segment files are rounded (fesa predict writes milliseconds): an end this much past the duration is
# that rounding, and is clipped; anything further is an error.
TOLERANCE = 0.01


def read_segments_json(path: Path, reference: bool = False) -> Dict[str, dict]:
    """A segments file, checked by :func:`check_segments` (``reference``: true segments, which may not overlap)."""
    try:
        data = json.loads(read_text(path, "segments file "))
    except json.JSONDecodeError as e:
        raise FesaError(f"{path} is not json: {e}") from e
    return check_segments(data, str(path), reference)


def check_segments(data: object, where: str, reference: bool = False) -> Dict[str, dict]:
    """Every utterance with a positive finite duration and events {emo, start, end}: finite times with
    0 <= start < end <= duration, returned in time order. Reference events may touch but not overlap."""
    layout = "{utt_id: {wav, duration, emotion: [{emo, start, end}]}}"
    if not isinstance(data, dict) or not data:
        raise FesaError(f"{where}: expected {layout} with at least one utterance")
    return {str(utt): _check_entry(entry, f"{where}: utterance {utt}", reference) for utt, entry in data.items()}


def _check_entry(entry: object, where: str, reference: bool) -> dict:
    if not isinstance(entry, dict) or not isinstance(entry.get("emotion"), list):
        raise FesaError(f"{where} needs 'duration' and an 'emotion' list of {{emo, start, end}}")
    duration = _seconds(entry.get("duration"), f"{where}: 'duration'")
    if duration <= 0:
        raise FesaError(f"{where}: 'duration' is {duration}; it must be positive")
    events = sorted((_check_event(e, where, duration) for e in entry["emotion"]), key=lambda e: (e["start"], e["end"]))
    if reference:
        for a, b in zip(events, events[1:]):
            if b["start"] < a["end"]:
                raise FesaError(f"{where}: reference events overlap ({a} and {b}); each stretch of time has one true emotion")
    return {**entry, "duration": duration, "emotion": events}


def _check_event(event: object, where: str, duration: float) -> dict:
    if not isinstance(event, dict) or not {"emo", "start", "end"} <= set(event) or not isinstance(event["emo"], str):
        raise FesaError(f"{where}: an event needs emo (a label), start and end: {event}")
    start, end = _seconds(event["start"], f"{where}: 'start'"), _seconds(event["end"], f"{where}: 'end'")
    if not 0 <= start < end or end > duration + TOLERANCE:
        raise FesaError(f"{where}: event {event} must have 0 <= start < end <= duration ({duration} s)")
    return {**event, "start": start, "end": min(end, duration)}


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FesaError(f"{where} is {value!r}; a finite number of seconds is needed")
    return float(value)


def eder(reference: Mapping[str, dict], hypothesis: Mapping[str, dict], neutral: str = NEUTRAL, first_letter: bool = False) -> Dict[str, object]:
    """Mean EDER over the reference's utterances (every one must be in the hypothesis), per utterance too, and the
    duration-weighted confusion of reference against hypothesis labels (first letters too, with ``first_letter``)."""
    reference, hypothesis = check_segments(reference, "the reference", True), check_segments(hypothesis, "the hypothesis")
    missing = sorted(set(reference) - set(hypothesis))
    if missing:
        raise FesaError(f"the hypothesis has no entry for {len(missing)} reference utterance(s): {', '.join(missing[:5])}")
    key = (lambda label: label[:1]) if first_letter else (lambda label: label)
    per_utt, confusion = {}, {}
    for utt, ref in reference.items():
        duration = ref["duration"]
        ref_spans = [(a, b, key(label)) for a, b, label in reference_spans(ref["emotion"], duration, neutral)]
        hyp_spans = [(e["start"], e["end"], key(str(e["emo"]))) for e in hypothesis[utt]["emotion"]]
        per_utt[utt] = utterance_eder(hyp_spans, ref_spans, duration)
        _confuse(confusion, ref_spans, distribute_overlap(merge_adjacent(hyp_spans)) if hyp_spans else [])
    return {
        "eder": 100.0 * float(np.mean(list(per_utt.values()))),
        "utterances": len(per_utt),
        "per_utterance": per_utt,
        "confusion_seconds": confusion,
    }


def _confuse(confusion: Dict[str, Dict[str, float]], reference: Sequence[Span], hypothesis: Sequence[Span]) -> None:
    for r_start, r_end, r_label in reference:
        row = confusion.setdefault(r_label, {})
        for h_start, h_end, h_label in hypothesis:
            overlap = min(r_end, h_end) - max(r_start, h_start)
            if overlap > 0:
                row[h_label] = row.get(h_label, 0.0) + overlap


def format_confusion_seconds(confusion: Mapping[str, Mapping[str, float]]) -> str:
    """Reference labels (rows) against hypothesis labels (columns), in seconds, with each row's share correct."""
    labels = sorted(set(confusion) | {h for row in confusion.values() for h in row})
    width = max(7, *(len(label) for label in labels))
    lines = ["true\\pred".ljust(width + 2) + "".join(label.rjust(width) for label in labels) + "  correct".rjust(width + 2)]
    for r in labels:
        row = confusion.get(r, {})
        total = sum(row.values())
        share = f"{100 * row.get(r, 0.0) / total:.1f}%" if total else "-"
        lines.append(r.ljust(width + 2) + "".join(f"{row.get(h, 0.0):.1f}".rjust(width) for h in labels) + share.rjust(width + 2))
    return "\n".join(lines)
