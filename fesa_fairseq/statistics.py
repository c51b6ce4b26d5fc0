"""Paired comparisons of two systems scored on the same test utterances, fold by fold.

The figure compared is the report's: a metric computed per fold, then averaged over folds. Its uncertainty comes
from the test utterances: a paired bootstrap resamples each fold's utterances with replacement (the same draw for
both systems) and recomputes the metric, which gives the 95 % interval of the difference; a paired permutation
test swaps the two systems' outcomes on each utterance at random, which gives a one-sided p-value for "the first
system is better". Folds are resampled within themselves, never pooled: each fold has its own models.
"""

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Sequence

import numpy as np

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95
CHUNK = 1_000  # resamples computed at once: bounds the memory to CHUNK x utterances of a fold

AHEAD, BEHIND, UNDECIDED = "ahead", "behind", "no difference shown"


@dataclass
class FoldOutcomes:
    """Per test utterance of one fold, both systems: their predicted class indices, or a per-utterance value; a
    system replicated over seeds gives one row per seed."""

    targets: np.ndarray  # class index per utterance (UA, WA); unused by "eder"
    a: np.ndarray  # (utterances,) or (seeds, utterances)
    b: np.ndarray


@dataclass
class Comparison:
    metric: str
    a_mean: float  # the metric averaged over folds, as the report shows it
    b_mean: float
    difference: float  # a_mean - b_mean
    low: float  # the 95 % bootstrap interval of the difference
    high: float
    folds_ahead: int  # folds where a is better
    folds: int
    p_value: float  # one-sided, "a is better than b", paired permutation
    verdict: str  # ahead, behind, no difference shown (from the interval)

    def as_dict(self) -> Dict[str, object]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _ua(weights: Optional[np.ndarray], onehot: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """UA (%) per resample: the mean recall over the classes drawn. ``weights`` (resamples x utterances) counts how
    often each utterance is drawn, ``correct`` is one value per utterance; or ``weights`` is None (each utterance
    once) and ``correct`` holds one row per resample (permutations)."""
    if weights is None:
        totals, hits = onehot.sum(axis=0, keepdims=True), correct @ onehot
    else:
        totals, hits = weights @ onehot, weights @ (onehot * correct[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.nanmean(np.where(totals > 0, hits / totals, np.nan), axis=1)


def _wa(weights: Optional[np.ndarray], onehot: np.ndarray, correct: np.ndarray) -> np.ndarray:
    return 100.0 * _mean(weights, onehot, correct)


def _mean(weights: Optional[np.ndarray], onehot: np.ndarray, values: np.ndarray) -> np.ndarray:
    if weights is None:
        return np.atleast_2d(values).mean(axis=1)
    return weights @ values / weights.sum(axis=1)


def _correct(pred: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per utterance, the share of the system's runs (seeds: rows) that got it right. UA, WA and means are linear in
    it for a fixed draw of utterances, so the figure of the mean is the mean of the seeds' figures."""
    return np.atleast_2d(pred == t).mean(axis=0)


# metric -> (statistic, the per-utterance outcome it reads, higher is better)
METRICS: Dict[str, tuple] = {
    "ua": (_ua, _correct, True),
    "wa": (_wa, _correct, True),
    "eder": (_mean, lambda value, t: np.atleast_2d(np.asarray(value, dtype=np.float64)).mean(axis=0), False),
}


def compare(folds: Sequence[FoldOutcomes], metric: str = "ua", resamples: int = RESAMPLES, seed: int = SEED) -> Comparison:
    """System a against system b on the same utterances of each fold (see the module's docstring)."""
    statistic, outcome, higher = METRICS[metric]
    rng = np.random.default_rng(seed)
    observed, boot, perm = [], np.zeros(resamples), np.zeros(resamples)
    for fold in folds:
        t = np.asarray(fold.targets, dtype=np.int64)
        onehot = np.eye(int(t.max()) + 1)[t] if metric != "eder" else np.zeros((len(t), 1))
        a, b = outcome(np.asarray(fold.a), t), outcome(np.asarray(fold.b), t)
        observed.append((statistic(None, onehot, a[None])[0], statistic(None, onehot, b[None])[0]))
        for start in range(0, resamples, CHUNK):
            n = min(CHUNK, resamples - start)
            weights = _draw_counts(rng, n, len(a))
            boot[start : start + n] += statistic(weights, onehot, a) - statistic(weights, onehot, b)
            swap = rng.random((n, len(a))) < 0.5
            perm[start : start + n] += statistic(None, onehot, np.where(swap, b, a)) - statistic(None, onehot, np.where(swap, a, b))
    return _summarize(metric, np.array(observed), boot / len(folds), perm / len(folds), higher)


def _draw_counts(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """How often each of n utterances is drawn in each of ``resamples`` draws of n with replacement."""
    draws = rng.integers(0, n, (resamples, n)) + (np.arange(resamples) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def _summarize(metric: str, observed: np.ndarray, boot: np.ndarray, perm: np.ndarray, higher: bool) -> Comparison:
    sign = 1.0 if higher else -1.0
    difference = float(observed[:, 0].mean() - observed[:, 1].mean())
    tail = (1.0 - LEVEL) / 2
    low, high = (float(x) for x in np.quantile(boot, [tail, 1.0 - tail]))
    # tolerance: a permuted difference equal to the observed one (ties, identical systems) counts as at least as large
    p_value = float((1 + np.sum(sign * perm >= sign * difference - 1e-9)) / (1 + len(perm)))
    better = sign * (observed[:, 0] - observed[:, 1]) > 0
    verdict = _verdict(low, high, higher)
    return Comparison(
        metric=metric,
        a_mean=float(observed[:, 0].mean()),
        b_mean=float(observed[:, 1].mean()),
        difference=difference,
        low=low,
        high=high,
        folds_ahead=int(better.sum()),
        folds=len(observed),
        p_value=p_value,
        verdict=verdict,
    )


def _verdict(low: float, high: float, higher: bool) -> str:
    """From the interval: clear of 0 on the better side, clear of 0 on the worse side, or holding 0."""
    if low > 0:
        return AHEAD if higher else BEHIND
    if high < 0:
        return BEHIND if higher else AHEAD
    return UNDECIDED
