"""Emotion Diarization Error Rate, as SpeechBrain's ``speechbrain/utils/EDER.py`` defines it.

Per utterance: the predicted segments are merged where neighbours share an emotion and touch or overlap, then
any remaining overlap between neighbours is split evenly between them; the reference is the annotated events
with the time between them neutral. EDER = 1 - (duration where prediction and reference agree) / duration,
averaged over utterances.

SpeechBrain's reference allows one event per utterance. Here the events may be several (the demo corpus has
one per phrase): they are taken in time order, and every stretch no event covers is neutral, so that with one
event the reference is exactly SpeechBrain's. SpeechBrain compares first letters (its predictions are 'n',
'a', 'h', 's' against 'angry', ...): ``first_letter=True`` does the same; by default labels compare whole.

Reference and hypothesis files share the layout of the ZED corpus's SpeechBrain recipe:
``{utt_id: {"wav": path, "duration": seconds, "emotion": [{"emo": label, "start": s, "end": s}, ...]}}``.
"""

import json
from pathlib import Path
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from fesa_fairseq.errors import FesaError

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
    hyp = merge_adjacent(hypothesis)
    if len(hyp) != 1:
        hyp = distribute_overlap(hyp)
    agree = sum(
        max(0.0, min(r_end, h_end) - max(r_start, h_start))
        for r_start, r_end, r_label in reference
        for h_start, h_end, h_label in hyp
        if key(h_label) == key(r_label)
    )
    return 1.0 - agree / duration


def window_spans(predictions: Sequence[str], window: float, stride: float) -> List[Span]:
    """SpeechBrain's input: one prediction per window of ``window`` seconds every ``stride`` seconds."""
    return [(stride * i, stride * i + window, p) for i, p in enumerate(predictions)]


def speechbrain_eder(prediction: Sequence[str], duration: float, emotion: Sequence[Mapping], window_length: float, stride: float) -> float:
    """SpeechBrain's ``EDER(prediction, id, duration, emotion, window_length, stride)`` (neutral is 'n')."""
    return utterance_eder(
        window_spans(prediction, window_length, stride), reference_spans(emotion, float(duration), "n"), float(duration), first_letter=True
    )


def read_segments_json(path: Path) -> Dict[str, dict]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FesaError(f"missing file {path}") from None
    except json.JSONDecodeError as e:
        raise FesaError(f"{path} is not json: {e}") from e
    if not isinstance(data, dict):
        raise FesaError(f"{path}: expected {{utt_id: {{wav, duration, emotion: [{{emo, start, end}}]}}}}")
    for utt, entry in data.items():
        if not isinstance(entry, dict) or "duration" not in entry or not isinstance(entry.get("emotion"), list):
            raise FesaError(f"{path}: {utt} needs 'duration' and an 'emotion' list of {{emo, start, end}}")
        for e in entry["emotion"]:
            if not {"emo", "start", "end"} <= set(e) or float(e["end"]) < float(e["start"]):
                raise FesaError(f"{path}: {utt} has an event without emo/start/end, or ending before it starts: {e}")
    return data


def eder(reference: Mapping[str, dict], hypothesis: Mapping[str, dict], neutral: str = "neu", first_letter: bool = False) -> Dict[str, object]:
    """Mean EDER over the reference's utterances (every one must be in the hypothesis), per utterance too, and the
    duration-weighted confusion of reference against hypothesis labels."""
    missing = sorted(set(reference) - set(hypothesis))
    if missing:
        raise FesaError(f"the hypothesis has no entry for {len(missing)} reference utterance(s): {', '.join(missing[:5])}")
    per_utt, confusion = {}, {}
    for utt, ref in reference.items():
        duration = float(ref["duration"])
        if duration <= 0:
            raise FesaError(f"reference utterance {utt} has duration {duration}")
        ref_spans = reference_spans(ref["emotion"], duration, neutral)
        hyp_spans = [(float(e["start"]), float(e["end"]), str(e["emo"])) for e in hypothesis[utt]["emotion"]]
        per_utt[utt] = utterance_eder(hyp_spans, ref_spans, duration, first_letter)
        _confuse(confusion, ref_spans, distribute_overlap(merge_adjacent(hyp_spans)) if hyp_spans else [])
    return {
        "eder": 100.0 * float(np.mean(list(per_utt.values()))) if per_utt else float("nan"),
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
