"""The paired bootstrap and permutation test of fesa_fairseq.statistics, on cases whose answer is known."""

import numpy as np
import pytest

from fesa_fairseq.scoring import confusion_matrix, counts_of, unweighted_accuracy, weighted_accuracy
from fesa_fairseq.statistics import AHEAD, BEHIND, UNDECIDED, FoldOutcomes, _ua, _wa, compare


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
    back = compare([fold(t, wrong, t)], "ua", resamples=2000)
    assert back.high == -100 and back.verdict == BEHIND and back.p_value == 1.0


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
