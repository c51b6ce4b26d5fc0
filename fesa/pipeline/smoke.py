"""fesa run --smoke: the user's own experiment, every stage run for real at a tiny budget, measured and projected.

The smoke runs one fold (the experiment's first, or --folds), the first grid cell and seed, in its own experiment
folder ``EXP/smoke`` (its own stamps, locks and manifests: a real run never finds a smoke stage, nor a smoke run a
real one). Each training stage gets overrides appended after the experiment's own (the last word wins): a few
updates, one validation and one save at the last, a log line per update. Each stage is timed and its memory
measured: fairseq's own ``gb_free`` where it trains on a GPU, else the resident memory of the processes the stage
started, sampled from /proc. The full stage is then projected from its own budget (the real stage's yaml and
overrides): its start-up and validation as measured, its updates at the steady-state seconds per update.
``EXP/smoke/smoke.json`` holds every figure.
"""

import copy
import json
import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import yaml
from omegaconf import OmegaConf

from fesa.files import atomic_write_text
from fesa.options import SmokeOptions
from fesa.pipeline.curves import _LINE, LOG_NAME
from fesa.pipeline.experiment import ExperimentConfig
from fesa.pipeline.plan import Plan
from fesa.pipeline.stage import Stage

logger = logging.getLogger(__name__)

SMOKE_DIR = "smoke"  # EXP/smoke: the smoke's own experiment folder
SMOKE_FILE = "smoke.json"
LABEL_STAGES = ("tapt-labels", "emotion-labels")
_TIME = re.compile(r"^\[?(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d{3})?)")
_GPU_TOTAL = re.compile(r"total memory = ([\d.]+) GB")
_SAMPLE_SECONDS = 0.25
_FIRST_SAMPLE_SECONDS = 0.05


def smoke_overrides(updates: int) -> List[str]:
    """fairseq validates and saves once, at max_update (should_stop); no epoch or update interval reaches it first,
    and no max_epoch or patience stops it before."""
    never = 1_000_000
    return [
        f"optimization.max_update={updates}",
        "optimization.max_epoch=0",
        "common.log_interval=1",
        "dataset.validate_interval_updates=0",
        f"dataset.validate_interval={never}",
        "dataset.validate_after_updates=0",
        "checkpoint.save_interval_updates=0",
        f"checkpoint.save_interval={never}",
        "checkpoint.patience=-1",
    ]


def smoke_experiment(cfg: ExperimentConfig, opts: SmokeOptions, first_fold: bool, local: bool = True) -> ExperimentConfig:
    """The experiment at the smoke budget: its first fold (unless folds were chosen), its first seed, training stages
    cut to ``opts.updates``, k-means fitted on a sample of the training utterances; run here (``local``), on no
    more GPUs than this machine has."""
    smoke = copy.deepcopy(cfg)
    if local:
        smoke.slurm.gpus = local_gpus(cfg.slurm.gpus)
    if first_fold:
        smoke.folds = smoke.folds[:1]
    smoke.seeds = smoke.seeds[:1] if smoke.seeds else smoke.seeds
    budget = smoke_overrides(opts.updates)
    for kind in ("tapt", "tapt_finetune", "cpt", "finetune"):
        setattr(smoke.overrides, kind, [*getattr(smoke.overrides, kind), *budget])
    for labels in (smoke.tapt_labels, smoke.emotion_labels):
        labels.percent = opts.kmeans_percent if labels.percent < 0 else min(labels.percent, opts.kmeans_percent)
    return smoke


def local_gpus(wanted: int) -> int:
    """slurm.gpus for a smoke run here: a world size above this machine's GPUs is refused by fairseq, though the
    SLURM jobs the smoke run stands for would have them."""
    have = max(torch.cuda.device_count(), 1)
    if wanted > have:
        logger.warning(
            "slurm.gpus is %d and this machine has %d: the smoke run trains on %d (same batch per step, more update_freq)", wanted, have, have
        )
        return have
    return wanted


# ---- measuring a stage -------------------------------------------------------------------------------------


def _process_table() -> Dict[int, Tuple[int, int]]:
    """pid -> (parent pid, resident bytes) of every process /proc shows (none where there is no /proc)."""
    table, page = {}, os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            rss = int((entry / "statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue  # the process ended between listing and reading
        table[int(entry.name)] = (int(stat.rsplit(")", 1)[1].split()[1]), rss)
    return table


def _descendants(table: Dict[int, Tuple[int, int]], root: int) -> List[int]:
    children: Dict[int, List[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class ResidentPeak:
    """The largest sum of resident memory of this process's descendants that started after it did (a stage's
    command and its data loader workers, not the forkserver that was already there), sampled every 0.25 s.
    Pages shared between them count once per process, and a peak shorter than a sample can be missed."""

    def __init__(self) -> None:
        self.before = set(_descendants(_process_table(), os.getpid()))
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        wait = _FIRST_SAMPLE_SECONDS  # a short stage (a few seconds on a busy machine) gets sampled too
        while not self._stop.wait(wait):
            wait = _SAMPLE_SECONDS
            table = _process_table()
            self.peak = max(self.peak, sum(table[p][1] for p in _descendants(table, os.getpid()) if p not in self.before and p in table))

    def __enter__(self) -> "ResidentPeak":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Meter:
    """fesa run's observer of each stage it runs (runner.run_plan): wall seconds and resident peak, by stage key."""

    records: Dict[str, dict] = field(default_factory=dict)

    @contextmanager
    def __call__(self, stage: Stage) -> Iterator[None]:
        start = time.perf_counter()
        with ResidentPeak() as peak:
            try:
                yield
            finally:
                self.records[stage.key] = {"wall_s": round(time.perf_counter() - start, 2), "peak_rss_gb": _gb(peak.peak) if peak.peak else None}


def _gb(n_bytes: float) -> float:
    return round(n_bytes / 1024**3, 3)


# ---- reading fairseq's log ----------------------------------------------------------------------------------


@dataclass
class TrainingLog:
    """What a training stage's hydra_train.log says about its speed and memory."""

    updates: int = 0  # the last update logged
    s_per_update: Optional[float] = None  # steady state: between the first update after the warm-up and the last
    to_first_update_s: Optional[float] = None  # start-up: first log line to the first update
    after_last_update_s: Optional[float] = None  # the validation, the save and the exit
    updates_per_epoch: Optional[int] = None  # from fairseq's fractional epoch ("update": epoch - 1 + batches done / batches)
    peak_gpu_gb: Optional[float] = None  # torch's peak allocated CUDA memory (fairseq's gb_free against the total)


def _stamp(line: str) -> Optional[float]:
    m = _TIME.match(line)
    if not m:
        return None
    text = m[1]
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f" if "," in text else "%Y-%m-%d %H:%M:%S").timestamp()


def _updates(lines: Sequence[str]) -> List[Tuple[float, int, float, Optional[float]]]:
    """(time, num_updates, fractional epoch, gb_free) of every train_inner line."""
    found = []
    for line in lines:
        m, when = _LINE.search(line), _stamp(line)
        if not m or m["tag"] != "train_inner" or when is None:
            continue
        try:
            stats = json.loads(m["stats"])
            free = float(stats["gb_free"]) if "gb_free" in stats else None
            found.append((when, int(float(stats["num_updates"])), float(stats.get("update", 0.0)), free))
        except (json.JSONDecodeError, KeyError, ValueError):
            continue  # a line cut short by a crash
    return found


def read_training_log(log: Path, warmup_updates: int) -> TrainingLog:
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    times = [t for t in map(_stamp, lines) if t is not None]
    steps = _updates(lines)
    if not steps:
        return TrainingLog()
    steady = [s for s in steps if s[1] > warmup_updates] or steps
    result = TrainingLog(
        updates=steps[-1][1], to_first_update_s=round(steps[0][0] - times[0], 2), after_last_update_s=round(times[-1] - steps[-1][0], 2)
    )
    if steady[-1][1] > steady[0][1]:
        result.s_per_update = round((steady[-1][0] - steady[0][0]) / (steady[-1][1] - steady[0][1]), 4)
    first = [s for s in steps if s[2] <= 1.0]  # updates of the first epoch: update = their share of its batches
    if first and first[-1][2] > 0:
        result.updates_per_epoch = max(round(first[-1][1] / first[-1][2]), 1)
    total = next((float(m[1]) for m in map(_GPU_TOTAL.search, lines) if m), None)
    free = [s[3] for s in steps if s[3] is not None]
    if total is not None and free:
        result.peak_gpu_gb = round(total - min(free), 2)
    return result


# ---- a real stage's budget ----------------------------------------------------------------------------------

_BUDGET_KEYS = {
    "optimization.max_update": ("max_update", 0),
    "optimization.max_epoch": ("max_epoch", 0),
    "optimization.update_freq": ("update_freq", [1]),
    "dataset.validate_interval": ("validate_interval", 1),
    "dataset.validate_interval_updates": ("validate_interval_updates", 0),
    "checkpoint.patience": ("patience", -1),
    "distributed_training.distributed_world_size": ("world_size", 1),
}  # fairseq's defaults where the yaml does not say


def stage_budget(command: Sequence[str]) -> Dict[str, object]:
    """The budget of a fairseq-hydra-train command: its yaml's values, then its overrides, the last one winning."""
    folder, name = command[command.index("--config-dir") + 1], command[command.index("--config-name") + 1]
    config = OmegaConf.load(Path(folder) / f"{name}.yaml")
    budget = {}
    for key, (short, default) in _BUDGET_KEYS.items():
        value = OmegaConf.select(config, key, default=default)
        budget[short] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    for word in command:
        key, sep, value = word.lstrip("+").partition("=")
        if sep and key in _BUDGET_KEYS:
            budget[_BUDGET_KEYS[key][0]] = yaml.safe_load(value)
    return budget


# ---- projecting ---------------------------------------------------------------------------------------------


def full_updates(budget: Dict[str, object], measured: TrainingLog) -> Optional[int]:
    """max_update, or max_epoch times the measured epoch length where that is fewer (or max_update is 0)."""
    limits = [int(budget["max_update"])] if budget["max_update"] else []
    if budget["max_epoch"] and measured.updates_per_epoch:
        limits.append(int(budget["max_epoch"]) * measured.updates_per_epoch)
    return min(limits) if limits else None


def validations(budget: Dict[str, object], updates: int, measured: TrainingLog) -> int:
    """How often the full run validates (and saves): every validate_interval_updates, and every validate_interval
    epochs (max_epoch's, where the epoch length was not measured)."""
    count = updates // int(budget["validate_interval_updates"]) if budget["validate_interval_updates"] else 0
    epochs = updates // measured.updates_per_epoch if measured.updates_per_epoch else int(budget["max_epoch"] or 0)
    count += epochs // max(int(budget["validate_interval"] or 1), 1)
    return max(count, 1)


def project_training(wall_s: float, measured: TrainingLog, budget: Dict[str, object]) -> Tuple[Optional[float], str]:
    """The smoke's wall time with its updates replaced by the full run's, and its one validation (and save) by the
    full run's validations; an upper bound where patience may stop the run earlier."""
    updates = full_updates(budget, measured)
    if measured.s_per_update is None or not measured.updates:
        return None, "no steady updates were logged: not projected"
    if updates is None:
        return None, "max_update is 0 and the epoch length was not measured: not projected"
    extra = (updates - measured.updates) * measured.s_per_update
    extra += (validations(budget, updates, measured) - 1) * (measured.after_last_update_s or 0.0)
    note = f"{updates} updates"
    if budget["patience"] is not None and int(budget["patience"]) > 0:
        note += f"; an upper bound: patience {budget['patience']} may stop it earlier"
    if budget["max_epoch"] and not measured.updates_per_epoch:
        note += f"; max_epoch {budget['max_epoch']} may stop it earlier (epoch length not measured)"
    return round(wall_s + extra, 1), note


@dataclass
class StageFigures:
    """One smoke stage: what it took here, and what the real stage of that name is projected to take."""

    key: str
    name: str
    wall_s: Optional[float]
    peak_rss_gb: Optional[float] = None
    training: Optional[dict] = None  # TrainingLog's fields and the real stage's budget
    projected_s: Optional[float] = None
    note: str = ""


def measure_stage(stage: Stage, real: Optional[Stage], record: dict, opts: SmokeOptions) -> StageFigures:
    wall = record.get("wall_s")
    if wall is None and stage.recorded():  # run elsewhere (a SLURM job): the time its stamp holds
        wall = stage.recorded().get("seconds")
    figures = StageFigures(stage.key, stage.name, wall, record.get("peak_rss_gb"))
    if not stage.training:
        figures.projected_s = wall
        if stage.name in LABEL_STAGES:
            figures.note = f"k-means fitted on {opts.kmeans_percent:g} of the training utterances here: the full fit takes longer"
        return figures
    measured = read_training_log(stage.out_dir / LOG_NAME, opts.warmup_updates)
    budget = stage_budget((real or stage).command)
    figures.training = {**asdict(measured), "budget": budget}
    if wall is not None:
        figures.projected_s, figures.note = project_training(wall, measured, budget)
    return figures


def project_stage(real: Stage, by_key: Dict[str, StageFigures], by_name: Dict[str, StageFigures]) -> Optional[float]:
    """A stage of the real experiment, from the smoke stage of the same name and variant (any fold), else of the
    same name (other grid cells and seeds), at the real stage's own budget."""
    key = "/".join(real.key.split("/")[1:])
    figures = by_key.get(key) or by_name.get(real.name)
    if figures is None or figures.wall_s is None:
        return None
    if not real.training or not figures.training:
        return figures.projected_s
    measured = TrainingLog(**{k: v for k, v in figures.training.items() if k != "budget"})
    return project_training(figures.wall_s, measured, stage_budget(real.command))[0]


def experiment_projection(real_plan: Plan, figures: Sequence[StageFigures]) -> dict:
    """Every stage of the real experiment (all folds, cells and seeds): per fold, in total here (one stage after
    another, as fesa run runs them), and on SLURM (folds in parallel: the longest fold after the shared stages)."""
    by_key = {"/".join(f.key.split("/")[1:]): f for f in figures}
    by_name: Dict[str, StageFigures] = {}
    for f in figures:
        by_name.setdefault(f.name, f)
    folds: Dict[str, float] = {}
    training, missing = 0.0, []
    for stage in real_plan.stages:
        seconds = project_stage(stage, by_key, by_name)
        if seconds is None:
            missing.append(stage.key)
            continue
        fold = f"fold{stage.fold}" if stage.fold else "all"
        folds[fold] = folds.get(fold, 0.0) + seconds
        training += seconds if stage.training else 0.0
    shared = folds.get("all", 0.0)
    per_fold = {k: round(v, 1) for k, v in folds.items() if k != "all"}
    gpus = real_plan.cfg.slurm.gpus
    return {
        "stages": len(real_plan.stages),
        "not_projected": missing,
        "shared_s": round(shared, 1),
        "per_fold_s": per_fold,
        "total_here_s": round(sum(folds.values()), 1),
        "slurm": {
            "gpus_per_training_job": gpus,
            "wall_s": round(shared + max(per_fold.values(), default=0.0), 1),
            "gpu_hours": round(training * gpus / 3600, 2),
        },
    }


def _earlier(exp: Path) -> Dict[str, dict]:
    """What an earlier smoke run measured of its stages: a stage it completed is skipped now, its figures kept."""
    try:
        stages = json.loads((exp / SMOKE_FILE).read_text())["stages"]
        return {f["key"]: {"wall_s": f["wall_s"], "peak_rss_gb": f["peak_rss_gb"]} for f in stages}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        logger.warning("%s: not read (%s); the stages it measured are timed from their stamps", exp / SMOKE_FILE, e)
        return {}


def summarize(smoke_plan: Plan, real_plan: Plan, records: Dict[str, dict], opts: SmokeOptions, failed: Dict[str, str]) -> dict:
    real = {s.key: s for s in real_plan.stages}
    records = {**_earlier(smoke_plan.exp), **records}
    figures = [
        measure_stage(s, real.get(s.key), records.get(s.key, {}), opts) for s in smoke_plan.stages if s.key in records or s.status() == "complete"
    ]
    summary = {
        "smoke": {"updates": opts.updates, "kmeans_percent": opts.kmeans_percent, "folds": smoke_plan.cfg.folds, "failed": failed},
        "stages": [asdict(f) for f in figures],
        "experiment": experiment_projection(real_plan, figures) if not failed else None,
    }
    atomic_write_text(smoke_plan.exp / SMOKE_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


# ---- printing -----------------------------------------------------------------------------------------------


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _memory(f: dict) -> str:
    gpu = (f.get("training") or {}).get("peak_gpu_gb")
    if gpu is not None:
        return f"{gpu:.1f} GB GPU"
    return "-" if f.get("peak_rss_gb") is None else f"{f['peak_rss_gb']:.2f} GB RSS"


def format_summary(summary: dict) -> str:
    lines = ["| stage | smoke | s/update | peak memory | projected | note |", "|---|---|---|---|---|---|"]
    for f in summary["stages"]:
        spu = (f.get("training") or {}).get("s_per_update")
        cells = [f["key"], duration(f["wall_s"]), "-" if spu is None else f"{spu:.3f}", _memory(f), duration(f["projected_s"]), f["note"]]
        lines.append("| " + " | ".join(cells) + " |")
    exp = summary["experiment"]
    if exp:
        folds = ", ".join(f"{k} {duration(v)}" for k, v in exp["per_fold_s"].items())
        slurm = exp["slurm"]
        lines += [
            "",
            f"projected on this machine: {duration(exp['total_here_s'])} for all {exp['stages']} stages "
            f"(shared {duration(exp['shared_s'])}; {folds})",
            f"on SLURM, folds in parallel, {slurm['gpus_per_training_job']} GPU(s) per training job: about {duration(slurm['wall_s'])}, "
            f"{slurm['gpu_hours']} GPU-hours of training",
            "projections are upper bounds where patience stops a stage on a plateau; timed on this machine's devices",
        ]
        if exp["not_projected"]:
            lines.append(f"not projected: {', '.join(exp['not_projected'])}")
    return "\n".join(lines)
