"""Paired comparisons of two systems scored on the same test utterances, fold by fold.

The figure compared is the report's: a metric computed per fold (each system's runs averaged), then averaged over
folds. Its uncertainty comes from the test utterances and, where a system was trained more than once (seeds), from
its training runs: a hierarchical paired bootstrap draws, within each fold, each system's runs with replacement,
then the fold's utterances with replacement (the same draw for both systems), and recomputes the metric; the 2.5 %
and 97.5 % quantiles of the difference are the 95 % interval. Folds are resampled within themselves, never pooled:
each fold has its own models. With one run a side nothing is drawn at the run level: the paired bootstrap of
utterances, and the interval covers only the test utterances (these two trained models).

The two-sided p-value: with one run a side, a paired permutation test that swaps the two systems' outcomes on each
utterance (exact for two fixed models); with more, swapping per utterance is not valid (it treats the runs as
fixed), and p is the bootstrap's own: twice the share of resampled differences on the far side of 0, so that
p < 0.05 where the interval leaves out 0. The verdict needs both (and, in a report, Holm's adjustment of p over the
report's comparisons: family_verdicts).

Figures measured once per fold (the alignment's probe UA, purity, NMI) have no utterances to resample: compare_folds
is a paired t-test over the folds' differences, whose spread holds every fold's own training runs.
"""

import math
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
from scipy import stats

RESAMPLES = 10_000
SEED = 0
LEVEL = 0.95
CHUNK = 1_000  # resamples computed at once: bounds the memory to CHUNK x utterances of a fold

AHEAD, BEHIND, UNDECIDED = "ahead", "behind", "no difference shown"
UTTERANCES, RUNS = "test utterances", "test utterances and training runs"
FOLDS = "folds and their training runs"
RUN_SHIFT, RUN_NOISE = 0.35, 0.35  # simulate_folds: a run's per-class threshold shift and per-utterance noise (SD, difficulty units)


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
    low: float  # the 95 % interval of the difference
    high: float
    folds_ahead: int  # folds where a is better
    folds: int
    p_value: float  # two-sided, "a and b differ" (see the module's docstring for which test)
    verdict: str  # ahead, behind (interval clear of 0 and p < 0.05), no difference shown
    runs: Dict[str, int] = field(default_factory=lambda: {"a": 1, "b": 1})  # training runs per fold, each system
    covers: str = UTTERANCES  # what varies in the interval: the test utterances, the training runs too, or folds

    def as_dict(self) -> Dict[str, object]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _ua(weights: Optional[np.ndarray], onehot: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """UA (%) per resample: the mean recall over the classes drawn. ``weights`` (resamples x utterances) counts how
    often each utterance is drawn, ``correct`` is one value per utterance, or one row per resample (the runs drawn);
    or ``weights`` is None (each utterance once) and ``correct`` holds one row per resample (permutations)."""
    if weights is None:
        totals, hits = onehot.sum(axis=0, keepdims=True), correct @ onehot
    else:
        totals, hits = weights @ onehot, (weights * correct) @ onehot
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.nanmean(np.where(totals > 0, hits / totals, np.nan), axis=1)


def _wa(weights: Optional[np.ndarray], onehot: np.ndarray, correct: np.ndarray) -> np.ndarray:
    return 100.0 * _mean(weights, onehot, correct)


def _mean(weights: Optional[np.ndarray], onehot: np.ndarray, values: np.ndarray) -> np.ndarray:
    if weights is None:
        return np.atleast_2d(values).mean(axis=1)
    return (weights * values).sum(axis=1) / weights.sum(axis=1)


def _correct(pred: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per run (row) and utterance, 1 where the run got it right. UA, WA and means are linear in it for a fixed draw
    of utterances, so the figure of the runs' mean is the mean of the runs' figures."""
    return np.atleast_2d(pred == t).astype(np.float64)


# metric -> (statistic, the per-run, per-utterance outcome it reads, higher is better)
METRICS: Dict[str, tuple] = {
    "ua": (_ua, _correct, True),
    "wa": (_wa, _correct, True),
    "eder": (_mean, lambda value, t: np.atleast_2d(np.asarray(value, dtype=np.float64)), False),
}


def compare(folds: Sequence[FoldOutcomes], metric: str = "ua", resamples: int = RESAMPLES, seed: int = SEED) -> Comparison:
    """System a against system b on the same utterances of each fold (see the module's docstring)."""
    statistic, outcome, higher = METRICS[metric]
    rng = np.random.default_rng(seed)
    table = []
    for fold in folds:
        t = np.asarray(fold.targets, dtype=np.int64)
        onehot = np.eye(int(t.max()) + 1)[t] if metric != "eder" else np.zeros((len(t), 1))
        table.append((onehot, outcome(np.asarray(fold.a), t), outcome(np.asarray(fold.b), t)))
    runs = {"a": min(len(a) for _, a, _ in table), "b": min(len(b) for _, _, b in table)}
    permute = max(len(a) for _, a, _ in table) == 1 and max(len(b) for _, _, b in table) == 1
    observed, boot, perm = [], np.zeros(resamples), np.zeros(resamples)
    for onehot, a, b in table:
        observed.append((statistic(None, onehot, a.mean(axis=0)[None])[0], statistic(None, onehot, b.mean(axis=0)[None])[0]))
        for start in range(0, resamples, CHUNK):
            n = min(CHUNK, resamples - start)
            weights = _draw_counts(rng, n, a.shape[1])
            boot[start : start + n] += statistic(weights, onehot, _draw_runs(rng, n, a)) - statistic(weights, onehot, _draw_runs(rng, n, b))
            if permute:
                swap = rng.random((n, a.shape[1])) < 0.5
                perm[start : start + n] += statistic(None, onehot, np.where(swap, b[0], a[0])) - statistic(None, onehot, np.where(swap, a[0], b[0]))
    difference = float(np.mean([x - y for x, y in observed]))
    p_value = _permutation_p(perm / len(table), difference) if permute else _bootstrap_p(boot / len(table))
    covers = RUNS if min(runs.values()) > 1 else UTTERANCES
    return _summarize(metric, np.array(observed), boot / len(table), p_value, higher, runs, covers)


def _draw_runs(rng: np.random.Generator, resamples: int, rows: np.ndarray) -> np.ndarray:
    """Per resample, the outcome of each utterance averaged over a draw, with replacement, of the system's runs
    (rows); a single run is its own draw."""
    if len(rows) == 1:
        return rows[0]
    return _draw_counts(rng, resamples, len(rows)) @ rows / len(rows)


def _draw_counts(rng: np.random.Generator, resamples: int, n: int) -> np.ndarray:
    """How often each of n utterances (or runs) is drawn in each of ``resamples`` draws of n with replacement."""
    draws = rng.integers(0, n, (resamples, n)) + (np.arange(resamples) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(np.float64)


def _permutation_p(perm: np.ndarray, difference: float) -> float:
    # tolerance: a permuted difference as large as the observed one (ties, identical systems) counts as at least as large
    return float((1 + np.sum(np.abs(perm) >= abs(difference) - 1e-9)) / (1 + len(perm)))


def _bootstrap_p(boot: np.ndarray) -> float:
    """Twice the share of resampled differences on the far side of 0 (0 itself on both sides), at most 1."""
    below, above = np.sum(boot <= 1e-9), np.sum(boot >= -1e-9)
    return float(min(1.0, 2 * (1 + min(below, above)) / (1 + len(boot))))


def _summarize(metric: str, observed: np.ndarray, boot: np.ndarray, p_value: float, higher: bool, runs: Dict[str, int], covers: str) -> Comparison:
    sign = 1.0 if higher else -1.0
    tail = (1.0 - LEVEL) / 2
    low, high = (float(x) for x in np.quantile(boot, [tail, 1.0 - tail]))
    better = sign * (observed[:, 0] - observed[:, 1]) > 0
    return Comparison(
        metric=metric,
        a_mean=float(observed[:, 0].mean()),
        b_mean=float(observed[:, 1].mean()),
        difference=float(observed[:, 0].mean() - observed[:, 1].mean()),
        low=low,
        high=high,
        folds_ahead=int(better.sum()),
        folds=len(observed),
        p_value=p_value,
        verdict=_verdict(low, high, higher, p_value),
        runs=runs,
        covers=covers,
    )


def _verdict(low: float, high: float, higher: bool, p_value: float) -> str:
    """From the interval: clear of 0 on the better side, clear of 0 on the worse side, or holding 0; and only with
    p below 1 - LEVEL (the two tests can disagree at the margin: the verdict takes the weaker)."""
    if p_value >= 1.0 - LEVEL:
        return UNDECIDED
    if low > 0:
        return AHEAD if higher else BEHIND
    if high < 0:
        return BEHIND if higher else AHEAD
    return UNDECIDED


def holm(p_values: Sequence[float]) -> List[float]:
    """Holm's step-down adjustment: the i-th smallest of m p-values times (m - i + 1), never below the one before
    it, at most 1. Controls the chance of any false verdict in the family at 1 - LEVEL, whatever their dependence."""
    order = np.argsort(p_values, kind="stable")
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted


def family_verdicts(entries: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
    """A report's comparisons (as_dict entries), each given ``p_holm`` (Holm over all of them) and a verdict that
    stands only where p_holm < 1 - LEVEL too; ``verdict_alone`` keeps the comparison's own."""
    adjusted = holm([float(e["p_value"]) for e in entries])
    out = []
    for entry, p in zip(entries, adjusted):
        alone = str(entry.get("verdict_alone", entry["verdict"]))
        verdict = alone if p < 1.0 - LEVEL else UNDECIDED
        out.append({**entry, "p_holm": round(p, 4), "verdict_alone": alone, "verdict": verdict})
    return out


def compare_folds(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]], metric: str, higher: bool = True) -> Optional[Comparison]:
    """Two systems' figures measured once per fold and run (a[k]: the runs of fold k), paired by fold: each fold's
    runs averaged, then a t-test over the folds' differences (two-sided; LEVEL t-interval). Every fold trained its
    own models, so the spread of the differences holds run-to-run variance as well as the folds'. None below 2 folds."""
    ma, mb = np.array([np.mean(x) for x in a]), np.array([np.mean(x) for x in b])
    d = ma - mb
    if len(d) < 2:
        return None
    se = float(d.std(ddof=1) / math.sqrt(len(d)))
    half = float(stats.t.ppf(0.5 + LEVEL / 2, len(d) - 1)) * se
    mean = float(d.mean())
    if se == 0:
        p_value = 1.0 if mean == 0 else 0.0
    else:
        p_value = float(2 * stats.t.sf(abs(mean) / se, len(d) - 1))
    sign = 1.0 if higher else -1.0
    return Comparison(
        metric=metric,
        a_mean=float(ma.mean()),
        b_mean=float(mb.mean()),
        difference=mean,
        low=mean - half,
        high=mean + half,
        folds_ahead=int(np.sum(sign * d > 0)),
        folds=len(d),
        p_value=p_value,
        verdict=_verdict(mean - half, mean + half, higher, p_value),
        runs={"a": min(len(x) for x in a), "b": min(len(x) for x in b)},
        covers=FOLDS,
    )


def simulate_folds(
    rng: np.random.Generator, runs: int, difference: float = 0.0, folds: int = 5, utterances: int = 50, classes: int = 4, accuracy: float = 0.7
) -> List[FoldOutcomes]:
    """Two systems' predictions as training runs give them, to measure how often a comparison errs. Each utterance
    has a difficulty shared by every run of both systems (the same test set); each run moves each class's threshold
    (run_shift) and adds noise of its own per utterance. a's expected accuracy exceeds b's by ``difference`` points;
    on a fixed test set of 50 utterances, 4 classes, a run's UA moves by about 6 points from run to run."""
    run_shift, noise = RUN_SHIFT, RUN_NOISE
    scale = math.sqrt(1.0 + run_shift**2 + noise**2)  # P(right) = Phi(threshold / scale), over utterances and runs
    thresholds = [stats.norm.ppf(accuracy + difference / 100.0) * scale, stats.norm.ppf(accuracy) * scale]
    out = []
    for _ in range(folds):
        t = rng.permutation(np.arange(utterances) % classes)
        difficulty = rng.standard_normal(utterances)
        rows = []
        for threshold in thresholds:
            shift = rng.normal(0.0, run_shift, (runs, classes))[:, t]
            right = difficulty < threshold + shift + rng.normal(0.0, noise, (runs, utterances))
            rows.append(np.where(right, t, (t + rng.integers(1, classes, (runs, utterances))) % classes))
        out.append(FoldOutcomes(t, rows[0], rows[1]))
    return out
