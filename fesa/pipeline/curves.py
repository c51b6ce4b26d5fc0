"""Learning curves of the training stages, read back from fairseq's own json logs.

fairseq-hydra-train with ``common.log_format: json`` (every plugin yaml) logs one json object per
``log_interval`` updates under the logger ``train_inner`` and one per validation under ``valid``; hydra
writes them to ``<run dir>/hydra_train.log``. Classifier runs log ``valid_ua``; pretraining runs only
``valid_loss``.
"""

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from fesa.pipeline.stage import STAGE_ORDER, STALE, read_stamp

logger = logging.getLogger(__name__)

LOG_NAME = "hydra_train.log"
# hydra: "[time][valid][INFO] - {...}"; fairseq's console format: "time | INFO | valid | {...}".
_LINE = re.compile(r"(?:\[|\| )(?P<tag>train_inner|valid)(?:\]| \|).*?(?P<stats>\{.*\})\s*$")
EARLY_STOP = "early stop since valid performance hasn't improved"  # fairseq_cli/train.py, checkpoint.patience


@dataclass
class Curve:
    """One training run: training loss and the validation metric, both against the update count."""

    stage: str
    train: List[Tuple[int, float]] = field(default_factory=list)
    valid: List[Tuple[int, float]] = field(default_factory=list)
    metric: str = "loss"  # "ua" (higher is better) for classifiers, "loss" for pretraining

    early_stopped: bool = False  # fairseq stopped it on a validation plateau (checkpoint.patience), not at max_update

    @property
    def still_improving(self) -> bool:
        """Stopped at its maximum budget, not on a plateau, with its last validation its best; for UA (noisy, often
        tied) that best must also have been reached first in the last quarter of the run."""
        if self.early_stopped or len(self.valid) < 2:
            return False
        values = [v for _, v in self.valid]
        if self.metric != "ua":
            return values[-1] < min(values[:-1])
        first_best = self.valid[values.index(max(values))][0]
        return values[-1] == max(values) and first_best >= 0.75 * self.valid[-1][0]

    def best(self) -> Optional[Tuple[int, float]]:
        if not self.valid:
            return None
        pick = max if self.metric == "ua" else min
        return pick(self.valid, key=lambda p: p[1])


def read_curve(log: Path, stage: str) -> Curve:
    curve = Curve(stage)
    for line in log.read_text(errors="replace").splitlines():
        curve.early_stopped |= EARLY_STOP in line
        m = _LINE.search(line)
        if not m:
            continue
        try:
            stats = json.loads(m["stats"])
        except json.JSONDecodeError:
            continue  # a line cut short by a crash
        if m["tag"] == "train_inner" and "loss" in stats and "num_updates" in stats:
            curve.train.append((int(float(stats["num_updates"])), float(stats["loss"])))
        elif m["tag"] == "valid" and "valid_num_updates" in stats:
            if "valid_ua" in stats:
                curve.metric = "ua"
            curve.valid.append((int(float(stats["valid_num_updates"])), float(stats[f"valid_{curve.metric}"])))
    return curve


def fold_curves(fold_dir: Path) -> Dict[str, Curve]:
    """Every current (not moved-aside) training run of a fold, by its folder under the fold (tapt, tapt-finetune-s2,
    cpt/L9-K50): found by the log each writes, one or two folders down, whatever the folder's name."""
    curves: Dict[str, Curve] = {}
    for log in sorted([*fold_dir.glob(f"*/{LOG_NAME}"), *fold_dir.glob(f"*/*/{LOG_NAME}")], key=_pipeline_order):
        run = log.parent.relative_to(fold_dir).as_posix()
        if STALE not in run:
            curves[run] = read_curve(log, run)
    return curves


def _pipeline_order(log: Path) -> Tuple[int, str]:
    """In the order the stages run (its stamp's cell), then by folder; a run without a readable cell goes last."""
    stage = ((read_stamp(log.parent) or {}).get("cell") or {}).get("stage")
    return (STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER), log.parent.as_posix())
