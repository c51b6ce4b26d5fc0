"""Per-frame class posteriors -> emotion segments: median smoothing, a minimum duration, merged runs."""

from typing import List, Sequence

import numpy as np
from scipy.ndimage import median_filter

from fesa.segments import Segment


def frames_to_segments(
    posteriors: np.ndarray, labels: Sequence[str], frame_rate: float, duration: float, median: float = 0.25, min_duration: float = 0.25
) -> List[Segment]:
    """Each class's posterior is median-filtered over ``median`` seconds (a median of class indices means
    nothing), then every frame takes its argmax; runs shorter than ``min_duration`` join the neighbour whose
    class is more probable over them; equal neighbours merge. Frame t spans [t, t + 1) / frame_rate; the last
    segment ends at ``duration``."""
    if len(posteriors) == 0:
        return []
    width = max(1, int(round(median * frame_rate)) | 1)
    smooth = median_filter(posteriors, size=(width, 1), mode="nearest") if width > 1 else posteriors
    runs = _runs((smooth + 1e-6 * posteriors).argmax(axis=1))  # ties (all classes filtered to 0) go to the raw posterior
    min_frames = min_duration * frame_rate
    while len(runs) > 1:
        i = min(range(len(runs)), key=lambda j: runs[j][2] - runs[j][1])
        label, a, b = runs[i]
        if b - a >= min_frames:
            break
        neighbours = [j for j in (i - 1, i + 1) if 0 <= j < len(runs)]
        into = max(neighbours, key=lambda j: posteriors[a:b, runs[j][0]].mean())
        runs[i] = (runs[into][0], a, b)
        runs = _merge(runs)
    ends = [b / frame_rate for _, _, b in runs[:-1]] + [max(duration, runs[-1][2] / frame_rate)]
    return [Segment(round(a / frame_rate, 3), round(end, 3), labels[c], float(posteriors[a:b, c].mean())) for (c, a, b), end in zip(runs, ends)]


def _runs(classes: np.ndarray) -> List[tuple]:
    cuts = np.flatnonzero(np.diff(classes)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, len(classes)]
    return [(int(classes[a]), int(a), int(b)) for a, b in zip(starts, ends)]


def _merge(runs: List[tuple]) -> List[tuple]:
    out = [runs[0]]
    for c, a, b in runs[1:]:
        if c == out[-1][0]:
            out[-1] = (c, out[-1][1], b)
        else:
            out.append((c, a, b))
    return out
