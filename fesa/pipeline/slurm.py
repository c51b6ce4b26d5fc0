"""SLURM batch scripts for `fesa run --slurm`: one job per stage and fold, chained with afterok dependencies.

Each job runs ``fesa run EXP/experiment.yaml --only <stage>``, which runs the stage's command (shown in the
script) and stamps it, exactly as a local run does; folds run in parallel, stages of a fold in order.
Training jobs get the configured GPUs; fairseq's own distributed training uses them: the plan sets the world size
and the batch per step to the yaml's (pipeline/distributed.py).

A job whose input job failed or was cancelled is cancelled too (``--kill-on-invalid-dep=yes``), never left
pending. Submitting again skips the stages that are complete or whose job (EXP/slurm/jobs.json) is still pending
or running, and chains new jobs after those. Training jobs are ``--requeue``-able: a requeued or preempted job
finds its stage started under the same fingerprint and resumes in place, fairseq from ``checkpoint_last.pt``.
"""

import json
import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from fesa.errors import FesaError
from fesa.files import atomic_write_json, atomic_write_text
from fesa.pipeline.experiment import SlurmConfig
from fesa.pipeline.stage import Stage

logger = logging.getLogger(__name__)


def sbatch_script(stage: Stage, cfg: SlurmConfig, exp: Path, job_command: List[str]) -> str:
    """Every value is shell-quoted, and none may hold a line break (checked when the experiment is loaded)."""
    options = [
        f"--job-name={job_name(stage.key)}",
        f"--output={exp / 'logs' / 'slurm'}/%x-%j.log",  # job_log()
        f"--cpus-per-task={cfg.cpus_per_task}",
        f"--mem={cfg.mem}",
        f"--time={cfg.time_train if stage.training else cfg.time_other}",
        "--nodes=1",
        "--ntasks=1",
    ]
    if stage.training:  # requeued (preempted, or scontrol requeue) it resumes from checkpoint_last.pt; one log
        options += ["--requeue", "--open-mode=append"]
    if stage.training and cfg.gpus > 0:
        options.append(f"--gres=gpu:{cfg.gpus}")
    if not stage.training and stage.name in ("tapt-labels", "emotion-labels", "evaluate") and cfg.gpus > 0:
        options.append("--gres=gpu:1")  # feature extraction and scoring run on a GPU when there is one
    options += [f"--partition={cfg.partition}"] * bool(cfg.partition) + [f"--account={cfg.account}"] * bool(cfg.account)
    options += list(cfg.sbatch_args)
    for value in [*options, *cfg.setup, *stage.command]:
        if "\n" in value or "\r" in value:
            raise FesaError(f"a SLURM script value holds a line break: {value!r}")
    return "\n".join(
        ["#!/bin/bash"]
        + [f"#SBATCH {shlex.quote(o)}" for o in options]
        + [
            "",
            "set -euo pipefail",
            *cfg.setup,
            "",
            f"# stage {stage.key}; its command:",
            f"#   {shlex.join(stage.command)}",
            shlex.join(job_command),
            "",
        ]
    )


def write_and_submit(stages: Sequence[Stage], cfg: SlurmConfig, exp: Path, job_command, submit: bool) -> List[str]:
    """Scripts under EXP/slurm/; with submit, sbatch each with afterok on the jobs of its unfinished inputs.

    Stages that are complete, or whose recorded job is still queued or running, get no new job.
    Returns the sbatch command lines (job ids of earlier stages as <stage> placeholders when not submitting).
    """
    if submit and shutil.which("sbatch") is None:
        raise FesaError("sbatch is not on PATH: run on a SLURM login node, or add --dry-run to only write the scripts")
    if stages:
        check_job_command(job_command(stages[0]), cfg)
    folder = exp / "slurm"
    (exp / "logs" / "slurm").mkdir(parents=True, exist_ok=True)
    recorded = read_jobs(exp) if submit else {}
    states = job_states(list(recorded.values())) if recorded else {}
    jobs: Dict[str, str] = {}
    lines: List[str] = []
    for stage in stages:
        if stage.status() == "complete":
            continue
        queued = recorded.get(stage.key)
        if queued and states.get(queued, ("", ""))[0] in ACTIVE:
            logger.info("%s: job %s is %s, not submitted again", stage.key, queued, states[queued][0].lower())
            jobs[stage.key] = queued
            continue
        script = folder / f"{stage.file_stem}.sbatch"
        atomic_write_text(script, sbatch_script(stage, cfg, exp, job_command(stage)))
        after = [jobs[d.key] for d in stage.deps if d.key in jobs]
        dependency = [f"--dependency=afterok:{':'.join(after)}", "--kill-on-invalid-dep=yes"] if after else []
        cmd = ["sbatch", "--parsable", *dependency, str(script)]
        lines.append(shlex.join(cmd))
        if submit:
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise FesaError(f"{shlex.join(cmd)} failed: {res.stderr.strip()}")
            jobs[stage.key] = res.stdout.strip().split(";")[0]
            recorded[stage.key] = jobs[stage.key]
            atomic_write_json(folder / JOBS, recorded)  # after each: a crash loses none
            logger.info("submitted %s as job %s", stage.key, jobs[stage.key])
        else:
            jobs[stage.key] = f"<{stage.key}>"
    return lines


def check_job_command(command: Sequence[str], cfg: SlurmConfig) -> None:
    """The program every job runs must resolve as the job will see it: an absolute path (the fesa that submits,
    runner.fesa_executable), or a name on PATH after slurm.setup."""
    program = command[0]
    if os.path.isabs(program):
        if not os.access(program, os.X_OK):
            raise FesaError(f"the SLURM jobs would run {program}, which is not an executable file; reinstall fesa_fairseq (make install)")
        logger.info("jobs run %s: the compute nodes must see this path (a shared file system), or set slurm.setup", program)
    elif shutil.which(program) is None and not cfg.setup:
        raise FesaError(
            f"the SLURM jobs would run {program!r}, which is not on PATH here and slurm.setup is empty: "
            "add the line that activates the environment holding fesa to slurm.setup"
        )


JOBS = "jobs.json"  # EXP/slurm/jobs.json: the latest job id of every submitted stage
ACTIVE = ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED")


def job_name(key: str) -> str:
    return "fesa-" + key.replace("/", "-")


def job_log(exp: Path, key: str, job: str) -> Path:
    """Where sbatch_script's --output puts job `job` of stage `key`."""
    return exp / "logs" / "slurm" / f"{job_name(key)}-{job}.log"


def read_jobs(exp: Path) -> Dict[str, str]:
    """Stage key -> job id; a damaged file is an error naming it (submitting again could run a stage twice)."""
    path = exp / "slurm" / JOBS
    if not path.is_file():
        return {}
    try:
        jobs = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise FesaError(f"{path} is damaged ({e}): check squeue for this experiment's jobs, then remove or repair the file") from e
    if not isinstance(jobs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in jobs.items()):
        raise FesaError(f"{path} is damaged (not a map of stage to job id): check squeue for this experiment's jobs, then remove or repair the file")
    return jobs


def job_states(ids: Sequence[str]) -> Dict[str, Tuple[str, str]]:
    """Job id -> (state, reason) from squeue (queued and running jobs), then sacct or, where accounting is off,
    scontrol (finished jobs the controller still remembers). Ids SLURM no longer knows are left out."""
    ids = [i for i in ids if i]
    states: Dict[str, Tuple[str, str]] = {}
    if not ids or shutil.which("squeue") is None:
        return states
    res = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i|%T|%r"], capture_output=True, text=True)
    for line in res.stdout.splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        states[job] = (state, reason)
    rest = [i for i in ids if i not in states]
    if rest and shutil.which("sacct"):
        res = subprocess.run(["sacct", "-X", "-n", "-P", "-j", ",".join(rest), "-o", "JobID,State"], capture_output=True, text=True)
        if res.returncode == 0:
            for line in res.stdout.splitlines():
                job, state = (line.split("|") + [""])[:2]
                states[job] = (state.split()[0] if state else "", "")
    for job in [i for i in rest if i not in states]:
        res = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
        found = dict(field.split("=", 1) for field in res.stdout.split() if "=" in field)
        if res.returncode == 0 and "JobState" in found:
            states[job] = (found["JobState"], found.get("Reason", ""))
    return states
