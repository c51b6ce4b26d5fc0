"""Choose the demo's fine-tuning settings on validation UA only, logging everything tried.

Each candidate (a set of overrides of fesa_fairseq/config/finetune/tiny.yaml) fine-tunes the baseline of each fold,
its TAPT checkpoint, with fairseq-hydra-train as fesa run does; its figure is the best validation UA fairseq logged
(``valid_ua``, on the fold's validation split, drawn from the training sessions). The candidate with the highest
mean over folds wins (ties: the earlier one). No test split is read here: the test figures of the chosen settings are
computed once, afterwards, by ``fesa run`` (README, "Demo configuration").

Results are kept per candidate and fold (OUT/CANDIDATE/foldK/result.json): a rerun resumes. OUT/search.tsv holds every
figure, OUT/choice.json the winner.

    .venv/bin/python benchmarks/choose_finetune.py --exp demo_out/exp --out demo_out/choose [--folds 1,2,3] [--small]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
from fesa.pipeline.hydra import hydra_path, hydra_train  # noqa: E402

from common import HYDRA_TRAIN, parse_args  # noqa: E402

INIT = "{exp}/fold{fold}/tapt/checkpoints/checkpoint_best.pt"  # the baseline's starting point: the fold's TAPT


def candidate(frozen: bool, updates: int, lr: str) -> List[str]:
    warmup = max(1, updates // 10)  # 10 % of training, as tiny.yaml
    grad = "0.0" if frozen else "1.0"
    schedule = [f"optimization.max_update={updates}", f"lr_scheduler.warmup_updates={warmup}", f"optimization.lr=[{lr}]"]
    return [f"model.feature_grad_mult={grad}", *schedule]


# What was tried. The first is tiny.yaml as it stood (chosen, before this search, on test UA: README).
CANDIDATES: Dict[str, List[str]] = {
    "frozen-560-lr1e-3": candidate(True, 560, "1e-3"),
    "unfrozen-400-lr1e-3": candidate(False, 400, "1e-3"),
    "frozen-560-lr3e-4": candidate(True, 560, "3e-4"),
}
SMALL = dict(folds="1", updates=3, candidates="frozen-560-lr1e-3,unfrozen-400-lr1e-3")


def command(exp: Path, fold: int, init: str, overrides: List[str], run_dir: Path) -> List[str]:
    """fesa run's fine-tuning command (pipeline.hydra.hydra_train), run by this interpreter's fairseq-hydra-train."""
    data = hydra_path("task.data", exp / "manifests" / f"fold{fold}")
    start = hydra_path("model.w2v_path", Path(init.format(exp=exp, fold=fold)).resolve())
    return [HYDRA_TRAIN, *hydra_train("finetune", "tiny", run_dir, [data, start, "common.seed=1", *overrides])[1:]]


def best_valid_ua(log: Path) -> Optional[float]:
    """The highest validation UA fairseq logged: the epoch checkpoint_best.pt keeps (best_checkpoint_metric ua);
    None if it never validated."""
    scores = [float(json.loads(line[line.index("{") :])["valid_ua"]) for line in log.read_text(errors="replace").splitlines() if '"valid_ua"' in line]
    return max(scores, default=None)


def run_one(args: argparse.Namespace, name: str, fold: int, overrides: List[str]) -> dict:
    out = Path(args.out) / name / f"fold{fold}"
    result = out / "result.json"
    if result.exists():
        return json.loads(result.read_text())
    run_dir = out / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out / "train.log", "w") as log:
        code = subprocess.run(command(Path(args.exp).resolve(), fold, args.init, overrides, run_dir), stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"{name} fold {fold}: fairseq-hydra-train failed (exit {code}); see {out / 'train.log'}")
    seconds = round(time.perf_counter() - start, 1)
    figures = {"candidate": name, "fold": fold, "valid_ua": best_valid_ua(run_dir / "hydra_train.log"), "seconds": seconds}
    tmp = result.with_suffix(".tmp")
    tmp.write_text(json.dumps(figures))
    os.replace(tmp, result)
    return figures


def summarize(rows: List[dict], names: List[str], folds: List[int]) -> dict:
    by = {(r["candidate"], r["fold"]): r["valid_ua"] for r in rows}
    means = {n: sum(by[n, f] or 0.0 for f in folds) / len(folds) for n in names}
    chosen = max(names, key=lambda n: (means[n], -names.index(n)))
    print("| candidate | " + " | ".join(f"fold {f}" for f in folds) + " | mean valid UA |")
    print("|---" * (len(folds) + 2) + "|")
    for n in names:
        print(f"| {n} | " + " | ".join(f"{by[n, f]:.1f}" if by[n, f] is not None else "-" for f in folds) + f" | {means[n]:.1f} |")
    print(f"chosen on validation UA: {chosen} (mean {means[chosen]:.1f})")
    return {"chosen": chosen, "overrides": CANDIDATES[chosen], "mean_valid_ua": means, "folds": folds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exp", help="an experiment folder whose folds' TAPT stages are complete (fesa run --stages prepare:tapt)")
    parser.add_argument("--out", default="demo_out/choose", help="where each candidate's runs and the summary go")
    parser.add_argument("--folds", default="1,2,3", help="comma-separated folds (three: the search's cost on 2 CPU cores)")
    parser.add_argument("--init", default=INIT, help="the checkpoint each fine-tuning starts from ({exp}, {fold} filled in)")
    parser.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated names of CANDIDATES")
    parser.add_argument("--updates", type=int, default=None, help="cap every candidate's max_update (the --small run)")
    args = parse_args(parser, SMALL)
    names, folds = args.candidates.split(","), [int(f) for f in args.folds.split(",")]
    cap = [f"optimization.max_update={args.updates}", "lr_scheduler.warmup_updates=1"] if args.updates else []
    rows = []
    for name in names:
        for fold in folds:
            rows.append(run_one(args, name, fold, CANDIDATES[name] + cap))
            print(f"{name} fold {fold}: best valid UA {rows[-1]['valid_ua']}", flush=True)
    Path(args.out, "search.tsv").write_text("".join(f"{r['candidate']}\t{r['fold']}\t{r['valid_ua']}\t{r['seconds']}\n" for r in rows))
    Path(args.out, "choice.json").write_text(json.dumps(summarize(rows, names, folds), indent=2) + "\n")


if __name__ == "__main__":
    main()
