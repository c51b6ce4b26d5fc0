"""Running a plan's stages here: one process per stage command, under the stage's lock, logged, stamped.

A stage's command runs in its own process group with this interpreter's scripts first on PATH (fesa's own
commands as forks of a server that has torch and fairseq imported: ``pipeline.forkserver``); Ctrl-C or SIGTERM
stops the whole group and the run (``fesa.stop``, ``lock.run_child``). Its stamp is written before the command
starts and again when it succeeded, so that an interrupted stage resumes in place and a changed one is moved
aside, never deleted (``stage.Stage.status``).
"""

import logging
import os
import shlex
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager, Dict, List, Optional, Sequence

from fesa.errors import StageFailed, user_errors
from fesa.pipeline.forkserver import Entry
from fesa.pipeline.lock import exclusive, run_child
from fesa.pipeline.plan import Plan
from fesa.pipeline.stage import STALE, Stage
from fesa.stop import check as check_stop

logger = logging.getLogger(__name__)


def fesa_executable() -> List[str]:
    """The fesa that is running, by absolute path (not resolved: a venv's python must stay the venv's), so that a
    SLURM job runs it without PATH or an activated environment; its stage commands then find fesa and
    fairseq-hydra-train beside it (_environment)."""
    script = Path(sys.executable).parent / "fesa"
    return [str(script)] if os.access(script, os.X_OK) else [sys.executable, "-m", "fesa.cli"]


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


def run_stage(stage: Stage, exp: Path, entry: Optional[Entry] = None) -> None:
    """Run one stage under its lock (a SLURM job of the same stage, or another fesa run, holds it otherwise)."""
    with exclusive(stage.lock, f"stage {stage.key}"):
        _run_stage(stage, exp, entry)


def _run_stage(stage: Stage, exp: Path, entry: Optional[Entry]) -> None:
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
        returncode = run_child(stage.command, f, _environment(stage), entry)
    if returncode != 0 or not stage.done.exists():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise StageFailed(f"stage {stage.key} failed (exit {returncode}): {shlex.join(stage.command)}\n--- last lines of {log} ---\n{tail}")
    stage.mark_complete(time.perf_counter() - start)
    logger.info("%s: done in %.1f s", stage.key, time.perf_counter() - start)


def run_plan(
    plan: Plan, selected: Sequence[Stage], observe: Optional[Callable[[Stage], ContextManager]] = None, entry: Optional[Entry] = None
) -> Dict[str, str]:
    """Run the selected stages in order; a failure stops its fold (or everything, for a shared stage). ``observe``
    wraps each stage that runs (fesa run --smoke measures them); ``entry`` runs fesa's own stage commands in forks of a
    server that has imported torch and fairseq once (``pipeline.forkserver``), else they run as subprocesses.

    Returns the failure message per fold key ("all" for shared stages).
    """
    failed: Dict[str, str] = {}
    todo = [s for s in selected if s.status() != "complete"]
    logger.info("%d stages selected, %d already complete, %d to run", len(selected), len(selected) - len(todo), len(todo))
    for i, stage in enumerate(selected, start=1):
        check_stop()  # SIGINT or SIGTERM came: no next stage (not even its lock, nor moving its old output aside)
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
            with observe(stage) if observe else nullcontext():
                run_stage(stage, plan.exp, entry)
        except user_errors() as e:
            failed[fold] = str(e)
            logger.error("%s", e)
    return failed
