"""Cross-entropy for utterance emotion classes, reporting UA and WA as the SER literature does.

UA (unweighted accuracy) is the mean recall over the classes present; WA (weighted accuracy) is plain
accuracy. Both are derived from per-class ``correct``/``total`` counts logged as sums, so they are exact
after fairseq reduces logging outputs across batches and GPUs (an average of per-batch UAs would not be).
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from fairseq import metrics
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass

from fesa_fairseq.scoring import unweighted_accuracy, weighted_accuracy

logger = logging.getLogger(__name__)

CORRECT, TOTAL = "correct_", "total_"


@dataclass
class EmotionCrossEntropyConfig(FairseqDataclass):
    label_smoothing: float = field(default=0.0, metadata={"help": "label smoothing of the cross-entropy (0 for none)"})


@register_criterion("emotion_cross_entropy", dataclass=EmotionCrossEntropyConfig)
class EmotionCrossEntropyCriterion(FairseqCriterion):
    def __init__(self, cfg: EmotionCrossEntropyConfig, task) -> None:
        super().__init__(task)
        self.label_smoothing = cfg.label_smoothing
        self.labels: List[str] = list(task.labels)
        weights = getattr(task, "class_weights", None)
        self.register_buffer("class_weights", weights if weights is not None else None, persistent=False)

    def forward(self, model, sample, reduce: bool = True) -> Tuple[torch.Tensor, int, Dict[str, float]]:
        net_output = model(**sample["net_input"])
        logits = net_output["logits"].float()
        target = sample["target"]
        loss = F.cross_entropy(logits, target, weight=self.class_weights, label_smoothing=self.label_smoothing, reduction="sum" if reduce else "none")
        sample_size = target.numel()
        logging_output = {"loss": loss.data, "ntokens": sample_size, "nsentences": sample_size, "sample_size": sample_size}
        logging_output.update(class_counts(logits.argmax(-1), target, self.labels))
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs: List[Dict[str, float]]) -> None:
        # float(): after fairseq's distributed reduction (_fast_stat_sync_sum) every value is a 0-d tensor
        loss = sum(float(log.get("loss", 0)) for log in logging_outputs)
        sample_size = sum(float(log.get("sample_size", 0)) for log in logging_outputs)
        metrics.log_scalar("loss", loss / max(sample_size, 1), sample_size, round=3)
        labels = sorted({key[len(CORRECT) :] for log in logging_outputs for key in log if key.startswith(CORRECT)})
        for label in labels:
            for prefix in (CORRECT, TOTAL):
                metrics.log_scalar_sum(f"_{prefix}{label}", sum(float(log.get(prefix + label, 0)) for log in logging_outputs))
        metrics.log_derived("ua", lambda meters: round(unweighted_accuracy(_counts(meters, labels)), 2))
        metrics.log_derived("wa", lambda meters: round(weighted_accuracy(_counts(meters, labels)), 2))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def class_counts(pred: torch.Tensor, target: torch.Tensor, labels: List[str]) -> Dict[str, int]:
    """Per class: utterances and correct ones. One bincount and one transfer per batch, not two per class."""
    wrong_right = torch.bincount(target * 2 + (pred == target).long(), minlength=2 * len(labels)).view(-1, 2).tolist()
    counts = {}
    for label, (wrong, right) in zip(labels, wrong_right):
        counts[TOTAL + label] = wrong + right
        counts[CORRECT + label] = right
    return counts


def _counts(meters, labels: List[str]) -> List[Tuple[float, float]]:
    return [(meters[f"_{CORRECT}{label}"].sum, meters[f"_{TOTAL}{label}"].sum) for label in labels]
