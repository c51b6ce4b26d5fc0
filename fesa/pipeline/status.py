"""Where an experiment stands, fold by fold and stage by stage, for local and SLURM runs alike.

The stamps say what is complete, stale or interrupted; a stage's lock says a local run holds it; EXP/slurm/jobs.json
and SLURM (squeue, then sacct or scontrol) say which job runs, waits, failed or was cancelled, and where its log is.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from fesa.errors import user_errors
from fesa.pipeline.lock import lock_holder
from fesa.pipeline.plan import Plan
from fesa.pipeline.runner import local_log
from fesa.pipeline.slurm import ACTIVE, JOBS, job_log, job_states, read_jobs
from fesa.pipeline.stage import DAMAGED, Stage

FAILED = {"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
WAITING = ("pending", "running")
BROKEN = ("failed", "cancelled")


@dataclass
class StageState:
    key: str
    state: str  # complete, running, pending, failed, cancelled, interrupted, stale, to do (damaged: jobs.json)
    detail: str = ""


def stage_states(plan: Plan) -> List[StageState]:
    """Every stage's state; a damaged EXP/slurm/jobs.json is shown as a first row, and the stages as if no job ran."""
    notes: List[StageState] = []
    try:
        jobs = read_jobs(plan.exp)
    except user_errors() as e:
        notes.append(StageState(f"slurm/{JOBS}", DAMAGED, str(e)))
        jobs = {}
    slurm = job_states(list(jobs.values()))
    return notes + [_state(stage, jobs.get(stage.key), slurm, plan.exp) for stage in plan.stages]


def _state(stage: Stage, job: str, slurm: Dict[str, tuple], exp: Path) -> StageState:
    status = stage.status()
    if status == "complete":
        stamp = stage.recorded() or {}
        return StageState(stage.key, "complete", f"{stamp.get('seconds', '?')} s, finished {stamp.get('finished', '?')}")
    state, reason = slurm.get(job, ("", ""))
    if state in ACTIVE:
        waiting = f" ({reason})" if reason and reason != "None" else ""
        running = state in ("RUNNING", "COMPLETING", "CONFIGURING")
        return StageState(stage.key, "running" if running else "pending", f"job {job}{waiting}")
    holder = lock_holder(stage.lock)
    if holder:
        return StageState(stage.key, "running", f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('since', '?')}")
    if state:
        log = job_log(exp, stage.key, job)
        if state in FAILED:
            return StageState(stage.key, "failed", f"job {job} {state.lower()}; log {log}")
        if state.startswith("CANCELLED"):
            why = "its input job failed or was cancelled" if reason == "DependencyNeverSatisfied" else "cancelled"
            return StageState(stage.key, "cancelled", f"job {job}: {why}" + (f"; log {log}" if log.exists() else ""))
    if status == "partial":
        log = local_log(exp, stage)
        return StageState(stage.key, "interrupted", f"started, not finished (stopped or failed): the next run resumes it; log {log}")
    if status == "stale":
        if (stage.recorded() or {}).get("state") == DAMAGED:
            return StageState(stage.key, "stale", f"its stamp {stage.stamp} is damaged (origin unknown): the next run moves the output aside")
        return StageState(stage.key, "stale", "output of another command or of other inputs: the next run moves it aside")
    return StageState(stage.key, "to do")


def format_status(states: Sequence[StageState]) -> str:
    width = max(len(s.key) for s in states)
    lines = [f"{'stage'.ljust(width)}  {'state':<11}  detail", f"{'-' * width}  {'-' * 11}  ------"]
    lines += [f"{s.key.ljust(width)}  {s.state:<11}  {s.detail}".rstrip() for s in states]
    counts: Dict[str, int] = {}
    for s in states:
        counts[s.state] = counts.get(s.state, 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in counts.items()))
    return "\n".join(lines)


def wait_for(plan: Plan, interval: float, timeout: float = float("inf")) -> List[StageState]:
    """Poll until no stage is pending or running (or timeout seconds have passed); return the last states."""
    start = time.monotonic()
    while True:
        states = stage_states(plan)
        if not any(s.state in WAITING for s in states) or time.monotonic() - start > timeout:
            return states
        time.sleep(interval)
