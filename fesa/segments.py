"""Emotion segment lines, ``utt_id start end emotion`` (tab or space separated, an ``utt_id start end ...`` header
skipped): the demo corpus's ``fesa_demo_segments.tsv`` and users' own segment files are read here, once."""

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional

from fesa.errors import FesaError
from fesa_fairseq.data.files import PathLike, read_lines


@dataclass(frozen=True)
class Segment:
    """A stretch of one emotion: true (from a segment file) or predicted (with the model's confidence)."""

    start: float  # seconds
    end: float
    label: str
    confidence: Optional[float] = None  # predicted segments: the label's mean posterior over the segment

    @classmethod
    def of_event(cls, event: Mapping) -> "Segment":
        """From an event of the segments layout, {"emo", "start", "end"}."""
        return cls(float(event["start"]), float(event["end"]), str(event["emo"]))


def read_segment_lines(path: PathLike) -> Dict[str, List[Segment]]:
    """Per utterance, its events in file order; a malformed line is an error naming its place."""
    events: Dict[str, List[Segment]] = {}
    for line_no, line in enumerate(read_lines(path), start=1):
        parts = line.split("\t") if "\t" in line else line.split()
        if line_no == 1 and parts[:3] == ["utt_id", "start", "end"]:
            continue
        try:
            utt, start, end, emotion = parts[0], float(parts[1]), float(parts[2]), parts[3]
        except (IndexError, ValueError):
            raise FesaError(f"{path}:{line_no}: expected 'utt_id start end emotion', got {line!r}") from None
        if not (math.isfinite(start) and math.isfinite(end) and 0 <= start < end):
            raise FesaError(f"{path}:{line_no}: times must be finite with 0 <= start < end, got start {start}, end {end}")
        events.setdefault(utt, []).append(Segment(start, end, emotion))
    return events
