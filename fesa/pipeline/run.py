"""`fesa run`'s logic: load and check the experiment, plan it, then print it, submit it to SLURM or run it here.

The command line only parses and prints; what happens, and in which order, is here.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fesa.errors import FesaError
from fesa.files import atomic_write_text
from fesa.options import SmokeOptions
from fesa.pipeline.experiment import check_values, experiment_yaml, load_experiment, parse_grid
from fesa.pipeline.forkserver import Entry
from fesa.pipeline.lock import exclusive
from fesa.pipeline.plan import Plan
from fesa.pipeline.runner import fesa_executable, run_plan
from fesa.pipeline.script import shell_script
from fesa.pipeline.smoke import SMOKE_DIR, Meter, smoke_experiment, summarize
from fesa.pipeline.stage import Stage

RUN_LOCK = ".fesa-run.lock"  # EXP/.fesa-run.lock: one fesa run at a time on an experiment folder


@dataclass
class RunRequest:
    """What `fesa run` was asked: the experiment yaml with its overrides, and how to run it."""

    config: Path
    overrides: List[str] = field(default_factory=list)
    exp_dir: Optional[Path] = None  # default exp/<config name>
    folds: Optional[List[int]] = None  # default the experiment's
    stages: Optional[str] = None  # FIRST:LAST or a,b,c
    grid: List[str] = field(default_factory=list)  # NAME=V1,V2 items
    dry_run: bool = False
    slurm: bool = False
    only: Optional[str] = None  # one stage key: what a SLURM job runs
    smoke: Optional[SmokeOptions] = None  # --smoke: the experiment at this budget, under EXP/smoke, measured and projected
    entry: Optional[Entry] = None  # runs a fesa stage command in a fork (the command line's main); None: subprocesses


@dataclass
class RunOutcome:
    exp: Path
    script: Optional[str] = None  # --dry-run: the commands as a shell script
    sbatch: List[str] = field(default_factory=list)  # --slurm: the sbatch command lines
    failed: Dict[str, str] = field(default_factory=dict)  # fold key -> why
    report: Optional[dict] = None  # fesa report's result, after a run that evaluated
    smoke: Optional[dict] = None  # --smoke: what smoke.json holds (the figures of each stage, the projections)


def run_experiment(req: RunRequest) -> RunOutcome:
    """Everything is checked before anything is written: the experiment, the grid, the stage selection."""
    folds = [] if req.folds is None else [f"folds=[{','.join(map(str, req.folds))}]"]
    cfg = load_experiment(Path(req.config), [*req.overrides, *folds])
    exp = Path(req.exp_dir or Path("exp") / Path(req.config).stem).resolve()
    cells = parse_grid(req.grid)
    check_values(cfg, cells, Path(req.config))
    real = None
    if req.smoke is not None:  # the real plan is what gets projected; the smoke's is its first fold, cell and seed
        real = Plan(cfg, exp, cells)
        cfg, exp, cells = smoke_experiment(cfg, req.smoke.check(), req.folds is None, not req.slurm), exp / SMOKE_DIR, cells[:1]
    plan = Plan(cfg, exp, cells)
    selected = select(plan, req)
    if req.dry_run and not req.slurm:
        return RunOutcome(exp, script=shell_script(selected))
    exp.mkdir(parents=True, exist_ok=True)
    if req.only:  # a SLURM job: the stage's own lock is enough, jobs of other stages run beside it
        return _run_locked(req, plan, selected)
    with exclusive(exp / RUN_LOCK, f"experiment folder {exp}"):
        return _run_locked(req, plan, selected, real)


def select(plan: Plan, req: RunRequest) -> List[Stage]:
    if not req.only:
        return plan.select(req.stages)
    selected = [s for s in plan.stages if s.key == req.only]
    if not selected:
        raise FesaError(f"--only {req.only}: no such stage; stages: {', '.join(s.key for s in plan.stages)}")
    return selected


def _run_locked(req: RunRequest, plan: Plan, selected: Sequence[Stage], real: Optional[Plan] = None) -> RunOutcome:
    from fesa.pipeline.report import make_report  # matplotlib: only once there is something to report

    exp, saved = plan.exp, plan.exp / "experiment.yaml"
    if not req.only:
        atomic_write_text(saved, experiment_yaml(plan.cfg))
    if req.smoke and (not req.slurm or all(s.status() == "complete" for s in selected)):
        return _smoke(req, plan, selected, real)
    if req.slurm:
        from fesa.pipeline.slurm import write_and_submit

        items = [f"{k}={v}" for k, v in plan.cells[0].items()] if req.smoke else req.grid
        grid = [a for item in items for a in ("--grid", item)]

        def job(stage: Stage) -> List[str]:
            return [*fesa_executable(), "run", str(saved), "--exp-dir", str(exp), "--only", stage.key, *grid]

        return RunOutcome(exp, sbatch=write_and_submit(selected, plan.cfg.slurm, exp, job, submit=not req.dry_run))
    outcome = RunOutcome(exp, failed=run_plan(plan, selected, entry=req.entry))
    if not outcome.failed and not req.only and any(s.name == "evaluate" for s in selected):
        outcome.report = make_report(exp)
    return outcome


def _smoke(req: RunRequest, plan: Plan, selected: Sequence[Stage], real: Plan) -> RunOutcome:
    """Run the smoke plan here, measuring each stage, or (after fesa run --smoke --slurm) read what its jobs left:
    their stamps and logs, without the resident memory only a local run samples."""
    meter = Meter()
    failed = {} if req.slurm else run_plan(plan, selected, meter, req.entry)
    return RunOutcome(plan.exp, failed=failed, smoke=summarize(plan, real, meter.records, req.smoke, failed))
