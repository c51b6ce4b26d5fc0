"""The pipeline: run (every stage, fold by fold, here or on SLURM) and status."""

import argparse
import sys
from pathlib import Path

from fesa.cli.common import Subparsers, add_options, ints, output_path, values
from fesa.errors import FesaError, StageFailed
from fesa.options import SmokeOptions

SMOKE_FIELDS = ("updates", "kmeans_percent")


def add_parsers(sub: Subparsers) -> None:
    _add_run(sub)
    _add_status(sub)


def _run(args: argparse.Namespace) -> None:
    from fesa.cli import main
    from fesa.pipeline.experiment import split_grid
    from fesa.pipeline.run import RunRequest, run_experiment

    grid, overrides = split_grid(args.grid or [])
    request = RunRequest(
        config=Path(args.config),
        overrides=list(args.overrides) + overrides,
        exp_dir=Path(args.exp_dir) if args.exp_dir else None,
        folds=None if args.folds is None else ints(args.folds, "--folds"),
        stages=args.stages,
        grid=grid,
        dry_run=args.dry_run,
        slurm=args.slurm,
        only=args.only,
        smoke=SmokeOptions(**values(args, SMOKE_FIELDS, prefix="smoke")) if args.smoke else None,
        entry=main,
    )
    outcome = run_experiment(request)
    if outcome.script is not None:
        print(outcome.script)
    elif outcome.smoke is not None:
        _print_smoke(outcome)
    elif args.slurm:
        print("\n".join(outcome.sbatch))
        print(f"{'wrote' if args.dry_run else 'submitted'} {len(outcome.sbatch)} job scripts under {outcome.exp / 'slurm'}")
    elif outcome.failed:
        for fold, message in outcome.failed.items():
            print(f"{fold}: FAILED: {message}", file=sys.stderr)
        raise StageFailed(f"{len(outcome.failed)} fold(s) failed; completed stages are kept, run the same command again to resume")
    elif outcome.report is not None:
        print(outcome.report["markdown"])
        print(f"report: {outcome.report['dir']}/report.md, report.json, confusion_*.png; logs: {outcome.exp / 'logs'}")


def _print_smoke(outcome) -> None:
    from fesa.pipeline.smoke import SMOKE_FILE, format_summary

    print(format_summary(outcome.smoke))
    print(f"smoke: {outcome.exp / SMOKE_FILE}; logs: {outcome.exp / 'logs'}")
    for fold, message in outcome.failed.items():
        print(f"{fold}: FAILED: {message}", file=sys.stderr)
    if outcome.failed:
        raise StageFailed("the smoke run failed at the stage named above: the real run would fail there too")


def _add_run(sub: Subparsers) -> None:
    p = sub.add_parser(
        "run",
        help="the whole method, fold by fold: every stage a command, resumable, local or on SLURM",
        description="Stages: prepare, all-audio (under protocol: authors), reference, tapt-labels, tapt, tapt-finetune, "
        "emotion-labels, cpt, finetune, evaluate, alignment (where the experiment names segments). Each "
        "is logged as the command it runs; complete stages are skipped; --dry-run prints them all as a shell script.",
    )
    p.add_argument("config", help="experiment yaml (see examples/iemocap/experiment.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value changes to the experiment config, e.g. emotion_labels.layer=6")
    p.add_argument("--exp-dir", type=output_path, help="experiment folder (default exp/<config name>)")
    p.add_argument("--folds", help="comma-separated folds (default: the config's)")
    p.add_argument("--stages", help="a range FIRST:LAST of the stages, or a comma-separated list (default all)")
    p.add_argument(
        "--grid",
        nargs="+",
        metavar="NAME=V1,V2",
        help="the Table 1 grid: layer=6,9,11 K=50,100,150 pooling=attention,mean (up to the first key=value of the experiment)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the commands as a shell script (with --slurm: write the job scripts only)")
    p.add_argument("--slurm", action="store_true", help="write one sbatch script per stage and fold and submit them with dependencies")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="every stage for real at a tiny budget, under EXP/smoke, on the first fold (or --folds), first grid cell and seed: "
        "prints and writes EXP/smoke/smoke.json, per stage, its time, seconds per update, peak memory and the full stage's "
        "projected time, then the whole experiment's",
    )
    add_options(p, SmokeOptions, SMOKE_FIELDS, prefix="smoke")
    p.add_argument("--only", help="run exactly this stage (e.g. fold1/cpt/L9-K50); what SLURM jobs call")
    p.set_defaults(func=_run)


def _status(args: argparse.Namespace) -> None:
    from fesa.pipeline.experiment import load_experiment, parse_grid
    from fesa.pipeline.plan import Plan
    from fesa.pipeline.status import BROKEN, format_status, stage_states, wait_for

    exp = Path(args.exp_dir).resolve()
    saved = exp / "experiment.yaml"
    if not saved.is_file():
        raise FesaError(f"{exp} holds no experiment.yaml: give the --exp-dir of a fesa run")
    plan = Plan(load_experiment(saved, [], check=False), exp, parse_grid(args.grid))
    states = wait_for(plan, args.interval) if args.wait else stage_states(plan)
    print(format_status(states))
    broken = [s for s in states if s.state in BROKEN]
    if args.wait and broken:
        keys = ", ".join(s.key for s in broken)
        raise StageFailed(f"{len(broken)} stage(s) failed or were cancelled ({keys}); run fesa run again to resubmit them")


def _add_status(sub: Subparsers) -> None:
    p = sub.add_parser(
        "status",
        help="where an experiment stands: every fold and stage complete, running, pending, failed, cancelled or to do",
        description="Reads the stage stamps and locks of EXP_DIR and, for fesa run --slurm, its jobs (EXP_DIR/slurm/jobs.json) "
        "through squeue and sacct (or scontrol). A failed or cancelled stage names its job and log; fesa run again "
        "resubmits exactly the stages that are neither complete nor queued.",
    )
    p.add_argument("exp_dir", help="an experiment folder of fesa run")
    p.add_argument("--grid", nargs="+", metavar="NAME=V1,V2", help="the grid the run was given (fesa run --grid), if any")
    p.add_argument("--wait", action="store_true", help="wait until nothing is pending or running; exit 1 if a stage failed or was cancelled")
    p.add_argument("--interval", type=float, default=10.0, help="seconds between polls with --wait (default 10)")
    p.set_defaults(func=_status)
