"""The method, fold by fold, as a list of stages; each stage is the very command a user could type.

    prepare -> reference -> tapt-labels -> tapt -> tapt-finetune -> emotion-labels -> cpt -> finetune -> evaluate

Layout of an experiment folder::

    EXP/manifests/fold{k}/...                 prepare (or the experiment's own manifests)
    EXP/fold{k}/tapt-labels/                  {train,valid}.km of the source model (MFCC when bootstrapping)
    EXP/fold{k}/tapt/                         fairseq run folder (checkpoints/, tblog/, hydra_train.log)
    EXP/fold{k}/tapt-finetune/                the paper's TAPT baseline
    EXP/fold{k}/emotion-labels/L{l}-K{k}/     pseudo-emotion labels of layer l of the fine-tuned TAPT model
    EXP/fold{k}/cpt/L{l}-K{k}/                continued pretraining on them
    EXP/fold{k}/finetune/L{l}-K{k}-{pooling}/ the method
    EXP/fold{k}/evaluate/{reference,baseline,L{l}-K{k}-{pooling}}/  metrics.json, predictions.tsv, confusion.png
    EXP/logs/                                 one log per stage run

A stage's stamp (``.fesa-stage.json``) holds the fingerprint of its command, of the yaml that command reads and of
the stamps of the stages it reads. It is written when the stage starts (state "started") and again when it
succeeds (state "complete"). A complete stage with the current fingerprint is skipped. A started stage with the
current fingerprint (it was interrupted) runs again in place, so its resumable work is reused: fairseq's
checkpoint_last.pt, the feature shards of fesa pseudo-labels. Any other output (another fingerprint, complete
or not, or a folder without a stamp) is moved aside to ``<dir>.stale-<time>``, never deleted, and the stage
runs afresh.
"""

import hashlib
import json
import logging
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fesa_fairseq.data.files import STAGE_STAMP, atomic_write_text
from fesa_fairseq.errors import FesaError, StageFailed
from fesa_fairseq.pipeline.experiment import Cell, ExperimentConfig, check_hydra_path, stage_yaml
from fesa_fairseq.pipeline.lock import exclusive, run_child

logger = logging.getLogger(__name__)

STAGE_ORDER = ("prepare", "reference", "tapt-labels", "tapt", "tapt-finetune", "emotion-labels", "cpt", "finetune", "evaluate")
STAMP = STAGE_STAMP
PLUGIN = Path(__file__).resolve().parent.parent
BEST = Path("checkpoints") / "checkpoint_best.pt"
DAMAGED = "damaged"  # the state of a stamp that is not the json a stage wrote
STALE = ".stale-"  # <dir>.stale-<time>: a stage's old output, moved aside when its command or inputs changed
REFERENCE = "reference"  # EXP/fold{k}/evaluate/reference: the acoustic reference, scored like every model


@dataclass
class Stage:
    name: str
    fold: Optional[int]
    variant: str
    out_dir: Path
    command: List[str]
    done: Path  # written by the command when it succeeded
    deps: List["Stage"] = field(default_factory=list)
    training: bool = False  # a fairseq-hydra-train job (a GPU job on SLURM)
    env: Dict[str, str] = field(default_factory=dict)  # set for the command on top of fesa's own environment

    @property
    def key(self) -> str:
        parts = [f"fold{self.fold}" if self.fold else "all", self.name] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    @property
    def file_stem(self) -> str:
        """The key as one file name: its local log (local_log) and its SLURM script."""
        return self.key.replace("/", "__")

    @property
    def lock(self) -> Path:
        """Held by whoever runs the stage: a local fesa run or its SLURM job."""
        return self.out_dir.with_name(f".{self.out_dir.name}.lock")

    @property
    def stamp(self) -> Path:
        return self.out_dir / STAMP

    def fingerprint(self) -> Optional[str]:
        """None while an input stage is incomplete. Covers the command, the yaml it names and its input stages."""
        dep_stamps = []
        for dep in self.deps:
            if not dep.stamp.is_file():
                return None
            dep_stamps.append(hashlib.sha256(dep.stamp.read_bytes()).hexdigest())
        configs = [hashlib.sha256(path.read_bytes()).hexdigest() for path in _config_files(self.command)]
        return hashlib.sha256(json.dumps({"command": self.command, "inputs": dep_stamps, "configs": configs}).encode()).hexdigest()

    def recorded(self) -> Optional[dict]:
        """The stamp; one that cannot be read is {"state": "damaged"}: its output's origin is unknown (stale)."""
        if not self.stamp.is_file():
            return None
        try:
            stamp = json.loads(self.stamp.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return {"state": DAMAGED}
        return stamp if isinstance(stamp, dict) else {"state": DAMAGED}

    def status(self) -> str:
        """'complete'; 'partial' (started under this very fingerprint, then stopped: resumable in place); 'stale'
        (output from another command or other inputs, or of unknown origin: moved aside before running); 'todo'."""
        stamp = self.recorded()
        if stamp is None:
            return "stale" if self.out_dir.exists() and any(self.out_dir.iterdir()) else "todo"
        same = stamp.get("fingerprint") == self.fingerprint()
        if stamp.get("state") == "started":
            return "partial" if same else "stale"
        return "complete" if same and self.done.exists() else "stale"

    def mark_started(self) -> None:
        """Written before the command runs, so that a crash leaves the identity of its partial work behind."""
        stamp = {
            "stage": self.key,
            "state": "started",
            "fingerprint": self.fingerprint(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        atomic_write_text(self.stamp, json.dumps(stamp, indent=2) + "\n")

    def mark_complete(self, seconds: float) -> None:
        stamp = {
            "stage": self.key,
            "state": "complete",
            "fingerprint": self.fingerprint(),
            "command": self.command,
            "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        atomic_write_text(self.stamp, json.dumps(stamp, indent=2) + "\n")


def _config_files(command: Sequence[str]) -> List[Path]:
    """The yaml a fairseq-hydra-train command reads: editing it changes the stage as much as an override does."""
    if "--config-dir" not in command or "--config-name" not in command:
        return []
    folder, name = command[command.index("--config-dir") + 1], command[command.index("--config-name") + 1]
    path = Path(folder) / f"{name}.yaml"
    if not path.is_file():
        raise FesaError(f"no config {path} (configs.<stage> names a yaml of fesa_fairseq/config/<stage>/ or a path)")
    return [path]


def _config(stage: str, name: str) -> List[str]:
    path = stage_yaml(stage, name)
    return ["--config-dir", str(path.parent), "--config-name", path.stem]


def hydra_train(stage: str, config: str, run_dir: Path, overrides: Sequence[str]) -> List[str]:
    return ["fairseq-hydra-train", *_config(stage, config), hydra_path("common.user_dir", PLUGIN), hydra_path("hydra.run.dir", run_dir), *overrides]


_HYDRA_PLAIN = re.compile(r"[\w./:@+~%-]+", re.ASCII)


def hydra_path(key: str, value: object) -> str:
    """``key=value`` for a hydra override, the value quoted where hydra's grammar would read more into it (a comma
    is a sweep; spaces, quotes, ``;``, brackets and non-ASCII letters are errors). In hydra's quoted strings only
    backslashes before a quote are escapes: those are doubled, and quotes escaped. Plain paths stay unquoted, so
    the commands (and the stage fingerprints) of existing experiments do not change."""
    text = str(value)
    if _HYDRA_PLAIN.fullmatch(text):
        return f"{key}={text}"
    quoted = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"{key}='{quoted}'"


def fesa(*args: object) -> List[str]:
    return ["fesa", *(str(a) for a in args)]


def fesa_executable() -> List[str]:
    """The fesa that is running, by absolute path (not resolved: a venv's python must stay the venv's), so that a
    SLURM job runs it without PATH or an activated environment; its stage commands then find fesa and
    fairseq-hydra-train beside it (_environment)."""
    script = Path(sys.executable).parent / "fesa"
    return [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "fesa_fairseq.cli"]


def _labels_args(labels, source: str) -> List[str]:
    if labels.kmeans_model:
        return ["--checkpoint", source, "--layer", str(labels.layer), "--kmeans-model", labels.kmeans_model]
    return [
        "--checkpoint",
        source,
        "--layer",
        str(labels.layer),
        "--clusters",
        str(labels.clusters),
        "--percent",
        str(labels.percent),
        "--kmeans-backend",
        labels.kmeans_backend,
    ]


class Plan:
    """Every stage of an experiment (and, for a grid, of every cell), sharing what cells have in common."""

    def __init__(self, cfg: ExperimentConfig, exp_dir: Path, cells: Sequence[Cell]) -> None:
        self.cfg, self.exp = cfg, exp_dir.resolve()
        check_hydra_path(str(self.exp), "--exp-dir")
        self.stages: List[Stage] = []
        self.manifests = Path(cfg.manifests).resolve() if cfg.manifests else self.exp / "manifests"
        prepare = None
        if cfg.corpus:
            prepare = self._add(
                Stage(
                    "prepare",
                    None,
                    "",
                    self.manifests,
                    fesa("prepare-iemocap", Path(cfg.corpus).resolve(), self.manifests, "--valid-fraction", cfg.valid_fraction, "--overwrite"),
                    self.manifests / "prepare.json",
                )
            )
        for k in cfg.folds:
            self._plan_fold(k, prepare, cells)
        if cfg.device == "cpu":
            # Hidden rather than common.cpu=true: on a machine with a GPU, fairseq's clip_grad_norm_ puts the
            # gradient norm on CUDA even then, and the first update fails (docs/fairseq-notes.md).
            for stage in self.stages:
                stage.env["CUDA_VISIBLE_DEVICES"] = ""

    def _add(self, stage: Stage) -> Stage:
        existing = next((s for s in self.stages if s.key == stage.key), None)
        if existing is None:
            self.stages.append(stage)
            return stage
        return existing

    def _plan_fold(self, k: int, prepare: Optional[Stage], cells: Sequence[Cell]) -> None:
        cfg, fold_dir, data = self.cfg, self.exp / f"fold{k}", self.manifests / f"fold{k}"
        deps = [prepare] if prepare else []
        device = ["--device", cfg.device]
        out = fold_dir / "evaluate" / REFERENCE
        self._add(Stage("reference", k, "", out, fesa("-q", "reference", data, "--split", "test", "--out", out), out / "metrics.json", deps))
        source = None if cfg.bootstrap else str(Path(cfg.source_checkpoint).resolve())
        pretrained = source
        if not cfg.skip_tapt:
            out = fold_dir / "tapt-labels"
            mfcc = ["--features", "mfcc", "--clusters", str(cfg.tapt_labels.clusters), "--kmeans-backend", cfg.tapt_labels.kmeans_backend]
            how = mfcc if cfg.bootstrap else _labels_args(cfg.tapt_labels, source)
            labels = self._add(
                Stage(
                    "tapt-labels",
                    k,
                    "",
                    out,
                    fesa("pseudo-labels", "--manifest-dir", data, "--splits", "train,valid", "--out", out, *how, *device),
                    out / "labels.json",
                    deps,
                )
            )
            out = fold_dir / "tapt"
            init = ["model.init_checkpoint=null", "model.label_rate=100"] if cfg.bootstrap else [hydra_path("model.init_checkpoint", source)]
            tapt = self._add(
                Stage(
                    "tapt",
                    k,
                    "",
                    out,
                    hydra_train(
                        "tapt",
                        cfg.configs.tapt,
                        out,
                        [hydra_path("task.data", data), hydra_path("task.label_dir", labels.out_dir), *init, *cfg.overrides.tapt],
                    ),
                    out / BEST,
                    [labels],
                    True,
                )
            )
            pretrained, deps = str(tapt.done), [tapt]
        baseline_pooling = cells[0].get("pooling", cfg.pooling)
        out = fold_dir / "tapt-finetune"
        baseline = self._add(
            Stage(
                "tapt-finetune",
                k,
                "",
                out,
                hydra_train(
                    "finetune",
                    cfg.configs.finetune,
                    out,
                    [
                        hydra_path("task.data", data),
                        hydra_path("model.w2v_path", pretrained),
                        f"model.pooling={baseline_pooling}",
                        *cfg.overrides.tapt_finetune,
                    ],
                ),
                out / BEST,
                deps,
                True,
            )
        )
        self._evaluate(k, "baseline", baseline, data, device)
        for cell in cells:
            layer, clusters = int(cell.get("layer", cfg.emotion_labels.layer)), int(cell.get("K", cfg.emotion_labels.clusters))
            pooling = cell.get("pooling", cfg.pooling)
            labels_cfg = replace(cfg.emotion_labels, layer=layer, clusters=clusters)
            lk = f"L{layer}-K{clusters}"
            out = fold_dir / "emotion-labels" / lk
            labels = self._add(
                Stage(
                    "emotion-labels",
                    k,
                    lk,
                    out,
                    fesa(
                        "pseudo-labels",
                        "--manifest-dir",
                        data,
                        "--splits",
                        "train,valid",
                        "--out",
                        out,
                        *_labels_args(labels_cfg, str(baseline.done)),
                        *device,
                    ),
                    out / "labels.json",
                    [baseline],
                )
            )
            init_from = pretrained if cfg.cpt_init == "tapt" else source
            out = fold_dir / "cpt" / lk
            cpt = self._add(
                Stage(
                    "cpt",
                    k,
                    lk,
                    out,
                    hydra_train(
                        "cpt",
                        cfg.configs.cpt,
                        out,
                        [
                            hydra_path("task.data", data),
                            hydra_path("task.label_dir", labels.out_dir),
                            hydra_path("model.init_checkpoint", init_from),
                            *cfg.overrides.cpt,
                        ],
                    ),
                    out / BEST,
                    [labels] + (deps if cfg.cpt_init == "tapt" else []),
                    True,
                )
            )
            variant = f"{lk}-{pooling}"
            out = fold_dir / "finetune" / variant
            method = self._add(
                Stage(
                    "finetune",
                    k,
                    variant,
                    out,
                    hydra_train(
                        "finetune",
                        cfg.configs.finetune,
                        out,
                        [hydra_path("task.data", data), hydra_path("model.w2v_path", cpt.done), f"model.pooling={pooling}", *cfg.overrides.finetune],
                    ),
                    out / BEST,
                    [cpt],
                    True,
                )
            )
            self._evaluate(k, variant, method, data, device)

    def _evaluate(self, k: int, variant: str, trained: Stage, data: Path, device: List[str]) -> Stage:
        out = self.exp / f"fold{k}" / "evaluate" / variant
        return self._add(
            Stage(
                "evaluate",
                k,
                variant,
                out,
                fesa("-q", "evaluate", trained.done, data, "--split", "test", "--out", out, *device),
                out / "metrics.json",
                [trained],
            )
        )

    def select(self, stages: Optional[str]) -> List[Stage]:
        """--stages a:b (a range of STAGE_ORDER) or a,b,c; None for all."""
        if not stages:
            return list(self.stages)
        if ":" in stages:
            first, _, last = stages.partition(":")
            names = STAGE_ORDER[STAGE_ORDER.index(_known(first or STAGE_ORDER[0])) : STAGE_ORDER.index(_known(last or STAGE_ORDER[-1])) + 1]
        else:
            names = [_known(s) for s in stages.split(",")]
        return [s for s in self.stages if s.name in names]


def _known(name: str) -> str:
    if name not in STAGE_ORDER:
        raise FesaError(f"unknown stage {name!r}; stages: {', '.join(STAGE_ORDER)}")
    return name


def shell_script(stages: Sequence[Stage]) -> str:
    lines = ["#!/usr/bin/env bash", "# Written by fesa run --dry-run: every stage of the experiment, in order.", "set -euo pipefail", ""]
    for stage in stages:
        note = "  # complete: fesa run would skip it" if stage.status() == "complete" else ""
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in stage.env.items())
        lines += [f"# {stage.key}{note}", env + shlex.join(stage.command), ""]
    return "\n".join(lines)


def _environment(stage: Stage) -> Dict[str, str]:
    """The commands run with this interpreter's scripts (fesa, fairseq-hydra-train) first on PATH."""
    env = {**os.environ, **stage.env}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def move_aside(stage: Stage) -> Path:
    aside = stage.out_dir.with_name(f"{stage.out_dir.name}{STALE}{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(stage.out_dir, aside)
    return aside


def local_log(exp: Path, stage: Stage) -> Path:
    """The log of the stage's command when fesa run runs it here (SLURM jobs log to slurm.job_log)."""
    return exp / "logs" / f"{stage.file_stem}.log"


def run_stage(stage: Stage, exp: Path) -> None:
    """Run one stage under its lock (a SLURM job of the same stage, or another fesa run, holds it otherwise)."""
    with exclusive(stage.lock, f"stage {stage.key}"):
        _run_stage(stage, exp)


def _run_stage(stage: Stage, exp: Path) -> None:
    status = stage.status()
    if status == "complete":
        logger.info("%s: completed meanwhile by another run", stage.key)
        return
    if status == "stale":
        aside = move_aside(stage)
        logger.info(
            "%s: its output was made by another command or from other inputs (or its origin is unknown); moved it to %s and starting afresh",
            stage.key,
            aside,
        )
    elif status == "partial":
        logger.info("%s: resuming the partial work of an interrupted run of the same command and inputs", stage.key)
    stage.out_dir.mkdir(parents=True, exist_ok=True)
    stage.mark_started()
    log = local_log(exp, stage)
    log.parent.mkdir(parents=True, exist_ok=True)
    logger.info("%s: %s", stage.key, shlex.join(stage.command))
    start = time.perf_counter()
    with open(log, "w") as f:
        returncode = run_child(stage.command, f, _environment(stage))
    if returncode != 0 or not stage.done.exists():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise StageFailed(f"stage {stage.key} failed (exit {returncode}): {shlex.join(stage.command)}\n--- last lines of {log} ---\n{tail}")
    stage.mark_complete(time.perf_counter() - start)
    logger.info("%s: done in %.1f s", stage.key, time.perf_counter() - start)


def run_plan(plan: Plan, selected: Sequence[Stage]) -> Dict[str, str]:
    """Run the selected stages in order; a failure stops its fold (or everything, for a shared stage).

    Returns the failure message per fold key ("all" for shared stages).
    """
    failed: Dict[str, str] = {}
    todo = [s for s in selected if s.status() != "complete"]
    logger.info("%d stages selected, %d already complete, %d to run", len(selected), len(selected) - len(todo), len(todo))
    for i, stage in enumerate(selected, start=1):
        fold = f"fold{stage.fold}" if stage.fold else "all"
        if fold in failed or "all" in failed:
            continue
        if stage.status() == "complete":
            logger.info("[%d/%d] %s: complete, skipped", i, len(selected), stage.key)
            continue
        missing = [d.key for d in stage.deps if d.status() != "complete"]
        if missing:
            failed[fold] = f"{stage.key} needs {', '.join(missing)} first (not selected by --stages, or not complete)"
            logger.error(failed[fold])
            continue
        logger.info("[%d/%d] %s", i, len(selected), stage.key)
        try:
            run_stage(stage, plan.exp)
        except FesaError as e:
            failed[fold] = str(e)
            logger.error("%s", e)
    return failed
