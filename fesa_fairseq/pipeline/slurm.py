"""SLURM batch scripts for `fesa run --slurm`: one job per stage and fold, chained with afterok dependencies.

Each job runs ``fesa run EXP/experiment.yaml --only <stage>``, which runs the stage's command (shown in the
script) and stamps it, exactly as a local run does; folds run in parallel, stages of a fold in order.
Training jobs get the configured GPUs; fairseq's own distributed training uses them (set
``distributed_training.distributed_world_size`` in the experiment's overrides to match).
"""

import json
import logging
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence

from fesa_fairseq.data.files import atomic_write_text
from fesa_fairseq.errors import FesaError
from fesa_fairseq.pipeline.experiment import SlurmConfig
from fesa_fairseq.pipeline.plan import Stage

logger = logging.getLogger(__name__)


def sbatch_script(stage: Stage, cfg: SlurmConfig, exp: Path, job_command: List[str]) -> str:
    """Every value is shell-quoted, and none may hold a line break (checked when the experiment is loaded)."""
    name = "fesa-" + stage.key.replace("/", "-")
    options = [
        f"--job-name={name}",
        f"--output={exp / 'logs' / 'slurm'}/%x-%j.log",
        f"--cpus-per-task={cfg.cpus_per_task}",
        f"--mem={cfg.mem}",
        f"--time={cfg.time_train if stage.training else cfg.time_other}",
        "--nodes=1",
        "--ntasks=1",
    ]
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

    Returns the sbatch command lines (job ids of earlier stages as <stage> placeholders when not submitting).
    """
    if submit and shutil.which("sbatch") is None:
        raise FesaError("sbatch is not on PATH: run on a SLURM login node, or add --dry-run to only write the scripts")
    folder = exp / "slurm"
    (exp / "logs" / "slurm").mkdir(parents=True, exist_ok=True)
    jobs: Dict[str, str] = {}
    lines: List[str] = []
    for stage in stages:
        if stage.status() == "complete":
            continue
        script = folder / f"{stage.key.replace('/', '__')}.sbatch"
        atomic_write_text(script, sbatch_script(stage, cfg, exp, job_command(stage)))
        after = [jobs[d.key] for d in stage.deps if d.key in jobs]
        cmd = ["sbatch", "--parsable"] + ([f"--dependency=afterok:{':'.join(after)}"] if after else []) + [str(script)]
        lines.append(shlex.join(cmd))
        if submit:
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise FesaError(f"{shlex.join(cmd)} failed: {res.stderr.strip()}")
            jobs[stage.key] = res.stdout.strip().split(";")[0]
            logger.info("submitted %s as job %s", stage.key, jobs[stage.key])
        else:
            jobs[stage.key] = f"<{stage.key}>"
    if submit:
        atomic_write_text(folder / "jobs.json", json.dumps(jobs, indent=2) + "\n")
    return lines
