"""UA, WA, macro-F1 and confusion matrices: the one place their arithmetic lives."""

from typing import Sequence, Tuple

import numpy as np


def unweighted_accuracy(counts: Sequence[Tuple[float, float]]) -> float:
    """Mean recall in percent over the classes present; `counts` is (correct, total) per class."""
    recalls = [c / t for c, t in counts if t > 0]
    return 100.0 * sum(recalls) / len(recalls) if recalls else 0.0


def weighted_accuracy(counts: Sequence[Tuple[float, float]]) -> float:
    """Accuracy in percent."""
    total = sum(t for _, t in counts)
    return 100.0 * sum(c for c, _ in counts) / total if total else 0.0


def confusion_matrix(targets: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted ones."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(targets, dtype=np.int64), np.asarray(predictions, dtype=np.int64)), 1)
    return matrix


def counts_of(matrix: np.ndarray) -> Sequence[Tuple[float, float]]:
    return [(float(matrix[i, i]), float(matrix[i].sum())) for i in range(len(matrix))]


def macro_f1(matrix: np.ndarray) -> float:
    """Mean F1 in percent over the classes present (a true utterance of theirs); a class never predicted scores 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    hits, true, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    present = true > 0
    if not present.any():
        return 0.0
    f1 = np.divide(2 * hits, true + predicted, out=np.zeros_like(hits), where=(true + predicted) > 0)
    return 100.0 * float(f1[present].mean())
