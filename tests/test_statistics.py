"""The paired bootstrap and permutation test of fesa.statistics, on cases whose answer is known, and how
often they err on simulated training runs."""

import math

import numpy as np
import pytest

from fesa.statistics import (
    AHEAD,
    BEHIND,
    FOLDS,
    RUNS,
    UNDECIDED,
    UTTERANCES,
    FoldOutcomes,
    _ua,
    _wa,
    compare,
    compare_folds,
    family_verdicts,
    holm,
    simulate_folds,
)
from fesa_fairseq.scoring import confusion_matrix, counts_of, unweighted_accuracy, weighted_accuracy


def fold(targets, a, b) -> FoldOutcomes:
    return FoldOutcomes(np.array(targets), np.array(a), np.array(b))


def random_fold(rng, n: int = 60, classes: int = 4, right_a: float = 0.7, right_b: float = 0.7) -> FoldOutcomes:
    t = rng.integers(0, classes, n)
    wrong = (t + rng.integers(1, classes, n)) % classes
    return fold(t, np.where(rng.random(n) < right_a, t, wrong), np.where(rng.random(n) < right_b, t, wrong))


def test_identical_systems_differ_by_nothing():
    rng = np.random.default_rng(0)
    f = random_fold(rng)
    for metric in ("ua", "wa"):
        c = compare([fold(f.targets, f.a, f.a)], metric, resamples=2000)
        assert c.difference == 0 and c.low == 0 and c.high == 0
        assert c.p_value == 1.0 and c.verdict == UNDECIDED and c.folds_ahead == 0


def test_one_system_right_wherever_the_other_is_wrong():
    t = np.array([0, 1, 2, 3] * 10)
    wrong = (t + 1) % 4
    c = compare([fold(t, t, wrong)], "ua", resamples=2000)
    assert c.a_mean == 100 and c.b_mean == 0 and c.difference == 100
    assert c.low == 100 and c.verdict == AHEAD and c.p_value == pytest.approx(1 / 2001)
    back = compare([fold(t, wrong, t)], "ua", resamples=2000)  # p is two-sided: as small either way
    assert back.high == -100 and back.verdict == BEHIND and back.p_value == pytest.approx(1 / 2001)


def test_a_small_real_difference_has_an_interval_around_it():
    rng = np.random.default_rng(1)
    folds = [random_fold(rng, 200, right_a=0.75, right_b=0.6) for _ in range(3)]
    c = compare(folds, "ua", resamples=4000)
    assert c.low < c.difference < c.high and c.low > 0 and c.verdict == AHEAD and c.p_value < 0.01
    noise = [random_fold(rng, 40) for _ in range(2)]
    c = compare(noise, "ua", resamples=4000)
    assert c.low < 0 < c.high and c.verdict == UNDECIDED


def test_the_difference_is_the_mean_of_the_fold_differences():
    """By hand: fold 1, UA a (1/2 + 2/2) / 2 = 75, b (2/2 + 0/2) / 2 = 50; fold 2, a 0 and b 100 (one utterance)."""
    f1 = fold([0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 0])
    f2 = fold([2], [0], [2])
    c = compare([f1, f2], "ua", resamples=500)
    assert c.a_mean == 37.5 and c.b_mean == 75 and c.difference == -37.5 and c.folds_ahead == 1 and c.folds == 2
    c = compare([f1, f2], "wa", resamples=500)
    assert c.a_mean == 37.5 and c.b_mean == 75


def test_resampled_ua_and_wa_are_the_scorers_on_the_drawn_utterances():
    """Weights counting how often each utterance is drawn give what scoring.py gives on the drawn list itself."""
    rng = np.random.default_rng(2)
    f = random_fold(rng, 30)
    draws = rng.integers(0, 30, (5, 30))
    weights = np.stack([np.bincount(d, minlength=30) for d in draws]).astype(float)
    onehot = np.eye(4)[f.targets]
    correct = (f.a == f.targets).astype(float)
    for row, d in zip(range(5), draws):
        counts = counts_of(confusion_matrix(f.targets[d], f.a[d], 4))
        assert _ua(weights[row : row + 1], onehot, correct)[0] == pytest.approx(unweighted_accuracy(counts))
        assert _wa(weights[row : row + 1], onehot, correct)[0] == pytest.approx(weighted_accuracy(counts))


def test_lower_is_better_for_eder():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0, 0.3, 80), rng.uniform(0.3, 0.6, 80)
    c = compare([FoldOutcomes(np.zeros(80), a, b)], "eder", resamples=2000)
    assert c.difference < 0 and c.high < 0 and c.verdict == AHEAD and c.p_value < 0.001 and c.folds_ahead == 1
    assert compare([FoldOutcomes(np.zeros(80), b, a)], "eder", resamples=2000).verdict == BEHIND


def test_the_same_seed_gives_the_same_interval():
    rng = np.random.default_rng(4)
    folds = [random_fold(rng) for _ in range(2)]
    assert compare(folds, resamples=1500) == compare(folds, resamples=1500)


def test_seeds_count_as_their_mean():
    """Two seeds of a, one right where the other is wrong: a's UA is the mean of the seeds' UAs, 50 against b's 50."""
    t = np.array([0, 1, 0, 1] * 5)
    wrong = 1 - t
    c = compare([FoldOutcomes(t, np.stack([t, wrong]), np.where(np.arange(20) % 2 == 0, t, wrong))], "ua", resamples=500)
    assert c.a_mean == 50 and c.b_mean == 50 and c.difference == 0
    c = compare([FoldOutcomes(t, np.stack([t, t, wrong]), wrong)], "wa", resamples=500)
    assert c.a_mean == pytest.approx(200 / 3) and c.b_mean == 0


def test_macro_f1_by_hand():
    """neu: 3 right, 1 taken for hap; hap: 1 right; sad: none true, one predicted. F1 neu 2*3/(4+3) = 6/7, hap
    2*1/(1+2) = 2/3; sad has no true utterance and does not count."""
    from fesa_fairseq.scoring import macro_f1

    matrix = [[3, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert macro_f1(matrix) == pytest.approx(100 * (6 / 7 + 2 / 3) / 2)
    assert macro_f1([[2, 0], [2, 0]]) == pytest.approx(100 * (2 * 2 / 6) / 2)  # a class never predicted scores 0


def test_runs_are_counted_and_say_what_the_interval_covers():
    rng = np.random.default_rng(5)
    one = compare(simulate_folds(rng, 1), resamples=500)
    assert one.runs == {"a": 1, "b": 1} and one.covers == UTTERANCES
    three = compare(simulate_folds(rng, 3), resamples=500)
    assert three.runs == {"a": 3, "b": 3} and three.covers == RUNS
    f = simulate_folds(rng, 3)[0]
    mixed = compare([FoldOutcomes(f.targets, f.a, f.b[:1])], resamples=500)  # one run of b: b's run variance unseen
    assert mixed.runs == {"a": 3, "b": 1} and mixed.covers == UTTERANCES
    assert three.as_dict()["runs"] == {"a": 3, "b": 3} and three.as_dict()["covers"] == "test utterances and training runs"


def test_runs_drawn_widen_the_interval_of_runs_that_disagree():
    """Two runs of a, one right wherever the other is wrong, b right on half: the same mean (50 against 50), but a
    draw of a's runs can be both the good one (+50) or both the bad one (-50): the interval reaches far out."""
    t = np.array([0, 1] * 20)
    wrong = 1 - t
    half = np.where(np.arange(40) < 20, t, wrong)
    c = compare([FoldOutcomes(t, np.stack([t, wrong]), half)], "wa", resamples=2000)
    assert c.difference == 0 and c.low < -40 and c.high > 40 and c.verdict == UNDECIDED and c.p_value == 1.0
    fixed = compare([FoldOutcomes(t, np.where(np.arange(40) % 2 == 0, t, wrong), half)], "wa", resamples=2000)
    assert fixed.high < 40  # the same mean from one run: only the utterances vary


def rates(runs: int, difference: float, simulations: int = 400, resamples: int = 1000) -> dict:
    """Over simulations of 5 folds x 50 utterances, 4 classes: how often the verdict, the interval alone and p alone
    call a different from b."""
    rng = np.random.default_rng(11)
    called = {"verdict": 0, "interval": 0, "p": 0}
    for i in range(simulations):
        c = compare(simulate_folds(rng, runs, difference), "ua", resamples=resamples, seed=i)
        called["verdict"] += c.verdict != UNDECIDED
        called["interval"] += c.low > 0 or c.high < 0
        called["p"] += c.p_value < 0.05
    return {k: v / simulations for k, v in called.items()}


def test_the_simulated_runs_move_a_folds_ua_by_about_six_points():
    rng = np.random.default_rng(12)
    spread = [np.std(_ua(None, np.eye(4)[f.targets], (f.a == f.targets).astype(float)), ddof=1) for f in simulate_folds(rng, 40, folds=20)]
    assert 5 < np.mean(spread) < 7.5


def test_one_run_a_system_calls_the_same_procedure_different_too_often():
    """Why a one-run comparison covers only its two trained models: across training runs its error rate is not 5 %."""
    one = rates(1, 0, simulations=200)
    assert one["interval"] > 0.15 and one["p"] > 0.12


def test_three_runs_a_system_hold_the_rate_at_the_nominal_level():
    """A/A: two procedures alike, three runs each: called different in at most 10 % of simulations (nominal 5 %)."""
    same = rates(3, 0)
    assert same["verdict"] <= 0.10 and same["interval"] <= 0.10 and same["p"] <= 0.10


def test_three_runs_a_system_find_a_true_difference_of_eight_points():
    """A/B: a's procedure 8 UA points better in expectation: found (verdict ahead) in at least 70 % of simulations."""
    better = rates(3, 8)
    assert better["verdict"] >= 0.70


def test_holm_by_hand():
    """Sorted 0.005, 0.01, 0.03, 0.04 (m = 4): x4 = 0.02, x3 = 0.03, x2 = 0.06, x1 = 0.04 -> 0.06 (never below the one before)."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0]) and holm([0.02]) == [0.02] and holm([]) == []


def test_a_family_keeps_only_the_verdicts_holm_holds():
    entries = [
        {"p_value": 0.01, "verdict": AHEAD},
        {"p_value": 0.04, "verdict": BEHIND},
        {"p_value": 0.03, "verdict": AHEAD},
        {"p_value": 0.005, "verdict": AHEAD},
    ]
    got = family_verdicts(entries)
    assert [e["p_holm"] for e in got] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [e["verdict"] for e in got] == [AHEAD, UNDECIDED, UNDECIDED, AHEAD]
    assert [e["verdict_alone"] for e in got] == [AHEAD, BEHIND, AHEAD, AHEAD]
    assert family_verdicts(got) == got  # applying it twice changes nothing


def test_fold_figures_by_hand():
    """Differences 1, 2, 3 over three folds: mean 2, SD 1, t = 2 / (1 / sqrt 3) = sqrt 12 on 2 degrees of freedom,
    whose two-sided p is 1 - t / sqrt(t^2 + 2) = 1 - sqrt(6 / 7); the half-width is t(0.975, 2) = 4.303 x 1 / sqrt 3."""
    c = compare_folds([[11.0], [12.0, 12.0], [13.0]], [[10.0], [10.0], [10.0]], "probe_ua")
    assert c.difference == 2 and c.a_mean == 12 and c.b_mean == 10 and c.folds_ahead == 3 and c.folds == 3
    assert c.p_value == pytest.approx(1 - math.sqrt(6 / 7)) and c.high - 2 == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4)
    assert c.verdict == UNDECIDED and c.covers == FOLDS and c.runs == {"a": 1, "b": 1}
    assert compare_folds([[1.0]], [[0.0]], "nmi") is None
    same = compare_folds([[1.0], [2.0]], [[1.0], [2.0]], "nmi")
    assert same.p_value == 1.0 and same.verdict == UNDECIDED


def test_fold_figures_a_and_a_rate():
    """Fold figures with a fold effect (SD 5) and run noise (SD 3), the same procedure twice: called different in
    about 5 % of simulations; 10 points apart with 3 runs: found nearly always."""
    rng = np.random.default_rng(13)

    def called(difference: float, runs: int) -> float:
        hits = 0
        for _ in range(400):
            fold = rng.normal(70, 5, 5)
            a = [list(f + difference + rng.normal(0, 3, runs)) for f in fold]
            b = [list(f + rng.normal(0, 3, runs)) for f in fold]
            hits += compare_folds(a, b, "probe_ua").verdict != UNDECIDED
        return hits / 400

    assert called(0, 1) <= 0.08 and called(0, 3) <= 0.08 and called(10, 3) >= 0.9
