"""The results of an experiment folder, each with its cell: the metrics.json of the scoring stages and the
alignment.json of the alignment stages, under EXP/fold{k}/{evaluate,alignment}/, leaving out what fesa run moved
aside (an old result, not a model of this experiment)."""

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

from fesa.errors import FesaError
from fesa.pipeline.cell import StageCell, recorded_cell
from fesa.pipeline.stage import STALE, read_stamp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    cell: StageCell  # what the result is of (recorded, from the stamp, or the legacy reader's)
    folder: Path  # the stage's output folder
    content: dict  # the json the stage wrote


Runs = Dict[Optional[int], Result]  # seed -> result (None: the yaml's seed, for a model not replicated)
Results = Dict[str, Dict[int, Runs]]  # model (StageCell.model_name) -> fold -> its runs


def stage_results(exp_dir: Path, stage: str, name: str) -> Iterator[Result]:
    """Every EXP/fold{k}/<stage>/<run>/<name> with its cell (the one it records, its stamp's, or the legacy reader's)."""
    for path in sorted(Path(exp_dir).glob(f"fold*/{stage}/*/{name}")):
        if STALE in path.parent.name or not path.parents[2].name[len("fold") :].isdigit():  # fold1_old: not fesa run's
            continue
        content = json.loads(path.read_text())
        cell = recorded_cell(path.parent, content, read_stamp(path.parent))
        if cell is None:
            logger.warning("%s: not in a fold's folder fesa run names (fold{k}): left out", path)
            continue
        yield Result(cell, path.parent, content)


def collect(exp_dir: Path, stage: str = "evaluate", name: str = "metrics.json") -> Results:
    """model -> fold -> seed -> result, of every scoring (or, with stage and name, alignment) stage."""
    results: Results = {}
    for result in stage_results(exp_dir, stage, name):
        runs = results.setdefault(result.cell.model_name, {}).setdefault(result.cell.fold, {})
        earlier = runs.setdefault(result.cell.seed, result)
        if earlier is not result:
            raise FesaError(
                f"{earlier.folder} and {result.folder} are both the {result.cell.model_name} of fold {result.cell.fold}"
                f"{'' if result.cell.seed is None else f', seed {result.cell.seed}'}, from two settings of the experiment (baseline_pooling "
                f"changed?): move the one you no longer want out of {exp_dir}, or give each setting its own --exp-dir"
            )
    return results


def seed_order(seed: Optional[int]) -> Tuple[bool, int]:
    """The run without a seed first, then by seed."""
    return seed is not None, seed or 0


def ordered(runs: Runs) -> List[Result]:
    return [runs[s] for s in sorted(runs, key=seed_order)]


def model_cells(results: Results) -> Dict[str, StageCell]:
    """Each model's cell, as its runs share it: without a fold or seed."""
    return {name: replace(next(iter(next(iter(folds.values())).values())).cell, fold=None, seed=None) for name, folds in results.items()}
