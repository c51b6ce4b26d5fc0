"""UA and WA from summable counts: hand-computed values, absent classes, reduction across logging outputs."""

from types import SimpleNamespace

import pytest
import torch
from fairseq import metrics

from fesa_fairseq.criterions.emotion_cross_entropy import EmotionCrossEntropyConfig, EmotionCrossEntropyCriterion, class_counts

LABELS = ["neu", "hap", "ang", "sad"]


def reduce(logging_outputs):
    with metrics.aggregate(new_root=True) as agg:
        EmotionCrossEntropyCriterion.reduce_metrics(logging_outputs)
        return agg.get_smoothed_values()


def log_of(pred, target):
    out = class_counts(torch.tensor(pred), torch.tensor(target), LABELS)
    out.update(loss=torch.tensor(1.0), sample_size=len(target))
    return out


def test_hand_computed():
    # neu 2/3, hap 1/1, ang 0/2, sad 2/2 -> UA = (2/3 + 1 + 0 + 1) / 4, WA = 5/8
    target = [0, 0, 0, 1, 2, 2, 3, 3]
    pred = [0, 0, 1, 1, 0, 3, 3, 3]
    stats = reduce([log_of(pred, target)])
    assert stats["ua"] == pytest.approx(round(100 * (2 / 3 + 1 + 0 + 1) / 4, 2))
    assert stats["wa"] == pytest.approx(62.5)


def test_absent_class_does_not_count_in_ua():
    target = [0, 0, 1, 1]  # no ang, no sad in this set
    pred = [0, 1, 1, 1]
    stats = reduce([log_of(pred, target)])
    assert stats["ua"] == pytest.approx(75.0)  # (1/2 + 2/2) / 2, not divided by 4
    assert stats["wa"] == pytest.approx(75.0)


def test_reduction_sums_counts_instead_of_averaging_batch_scores():
    a = log_of([0, 0, 0, 0], [0, 0, 0, 1])  # batch UA 50, WA 75
    b = log_of([2, 3], [2, 2])  # batch UA 50, WA 50
    stats = reduce([a, b])
    # pooled: neu 3/3, hap 0/1, ang 1/2 -> UA (1 + 0 + .5)/3 = 50, WA 4/6
    assert stats["ua"] == pytest.approx(50.0)
    assert stats["wa"] == pytest.approx(round(100 * 4 / 6, 2))
    shuffled = reduce([b, a])
    assert shuffled["ua"] == stats["ua"] and shuffled["wa"] == stats["wa"]
    assert EmotionCrossEntropyCriterion.logging_outputs_can_be_summed()


def test_forward_logs_counts_and_weights_the_loss():
    task = SimpleNamespace(labels=LABELS, class_weights=torch.tensor([1.0, 2.0, 1.0, 1.0]))
    crit = EmotionCrossEntropyCriterion(EmotionCrossEntropyConfig(), task)
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    model = lambda source, padding_mask: {"logits": logits}  # noqa: E731
    sample = {"net_input": {"source": None, "padding_mask": None}, "target": torch.tensor([0, 1])}
    loss, n, log = crit(model, sample)
    expected = torch.nn.functional.cross_entropy(logits, sample["target"], weight=task.class_weights, reduction="sum")
    torch.testing.assert_close(loss, expected)
    assert n == 2 and log["correct_neu"] == 1 and log["total_hap"] == 1 and log["correct_hap"] == 0
