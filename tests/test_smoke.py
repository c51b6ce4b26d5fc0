"""fesa run --smoke: the user's experiment at a smoke budget, kept apart from real results, measured and projected."""

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from fesa.corpora.demo import DEMO_SEGMENTS_FILE
from fesa.options import SmokeOptions
from fesa.pipeline.experiment import ExperimentConfig, load_experiment
from fesa.pipeline.plan import Plan
from fesa.pipeline.run import RunRequest, run_experiment
from fesa.pipeline.smoke import (
    SMOKE_DIR,
    SMOKE_FILE,
    TrainingLog,
    format_summary,
    project_training,
    read_training_log,
    smoke_experiment,
    stage_budget,
    summarize,
)

from tiny_hubert import run_fesa

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo" / "experiment.yaml"
SOURCE = ROOT / "examples" / "demo" / "source_model.pt"


def fairseq_log(path: Path, seconds: list, *, batches: int = 20, gpu: bool = False) -> None:
    """A hydra_train.log as fairseq-hydra-train writes it with log_interval 1: a start line, one train_inner line per
    update at the given times (seconds after the start), the validation, the save, the end."""

    def at(t: float) -> str:
        whole, ms = int(t), int(round((t - int(t)) * 1000))
        return f"[2026-01-01 10:{whole // 60:02d}:{whole % 60:02d},{ms:03d}]"

    lines = [f"{at(0)}[fairseq_cli.train][INFO] - {{'common': ...}}"]
    if gpu:
        lines.append(f"{at(0.5)}[fairseq.utils][INFO] - rank   0: capabilities =  9.0  ; total memory = 139.812 GB ; name = NVIDIA H200")
    for n, t in enumerate(seconds, start=1):
        stats = {
            "epoch": 1 + (n - 1) // batches,
            "update": round(n / batches, 3),
            "loss": "1.0",
            "num_updates": str(n),
            "ups": "2",
            "wall": str(int(t)),
        }
        if gpu:
            stats["gb_free"] = str(139.8 - 20 - n)  # the peak grows by 1 GB an update: 30 GB at update 10
        lines.append(f"{at(t)}[train_inner][INFO] - {json.dumps(stats)}")
    end = seconds[-1]
    lines += [f"{at(end + 1.5)}[valid][INFO] - {json.dumps({'valid_loss': '1.0', 'valid_num_updates': str(len(seconds))})}"]
    lines += [f"{at(end + 2)}[fairseq_cli.train][INFO] - done training in {end + 2:.1f} seconds"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


STEADY = [5.0, 6.0] + [6.0 + 0.5 * i for i in range(1, 9)]  # start-up 5 s, a slow second update, then 0.5 s an update


def test_training_log_gives_steady_seconds_per_update_epoch_length_and_gpu_peak(tmp_path):
    fairseq_log(tmp_path / "hydra_train.log", STEADY, gpu=True)
    measured = read_training_log(tmp_path / "hydra_train.log", warmup_updates=2)
    assert measured.updates == 10 and measured.s_per_update == pytest.approx(0.5)
    assert measured.to_first_update_s == pytest.approx(5.0) and measured.after_last_update_s == pytest.approx(2.0)
    assert measured.updates_per_epoch == 20 and measured.peak_gpu_gb == pytest.approx(30.0, abs=0.05)
    assert read_training_log(tmp_path / "missing.log", 2) == TrainingLog()


def test_budget_is_the_yaml_then_its_overrides_the_last_winning(tmp_path):
    (tmp_path / "stage.yaml").write_text("optimization:\n  max_update: 200\n  update_freq: [1]\ncheckpoint:\n  patience: 4\n")
    command = ["fairseq-hydra-train", "--config-dir", str(tmp_path), "--config-name", "stage", "optimization.max_update=60"]
    command += ["optimization.update_freq=[2]", "optimization.max_update=80", "+dataset.validate_interval_updates=10"]
    budget = stage_budget(command)
    assert budget["max_update"] == 80 and budget["update_freq"] == [2] and budget["patience"] == 4
    assert budget["validate_interval_updates"] == 10 and budget["max_epoch"] == 0 and budget["validate_interval"] == 1


def test_projection_arithmetic():
    measured = TrainingLog(updates=10, s_per_update=0.5, after_last_update_s=2.0, updates_per_epoch=20)
    budget = {"max_update": 60, "max_epoch": 0, "validate_interval": 1, "validate_interval_updates": 10, "patience": 4}
    # 50 more updates at 0.5 s; 60 // 10 + 3 epochs = 9 validations, 8 more than the smoke's, 2 s each
    seconds, note = project_training(30.0, measured, budget)
    assert seconds == pytest.approx(30 + 25 + 16) and "upper bound" in note and "60 updates" in note
    epochs = {**budget, "max_update": 0, "max_epoch": 2, "validate_interval_updates": 0, "patience": -1}
    seconds, note = project_training(30.0, measured, epochs)  # 2 epochs of 20 updates, a validation each
    assert seconds == pytest.approx(30 + 30 * 0.5 + 2.0) and "upper bound" not in note
    unknown = TrainingLog(updates=10, s_per_update=0.5, after_last_update_s=2.0)
    assert project_training(30.0, unknown, epochs)[0] is None


def demo_corpus(tmp_path: Path) -> Path:
    """What the demo yaml names of a demo corpus when planning: the folder, and its segment file (segments:)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / DEMO_SEGMENTS_FILE).write_text("utt_id\tstart\tend\temotion\n")
    return corpus


def _plans(tmp_path):
    corpus = demo_corpus(tmp_path)
    cfg = load_experiment(DEMO, [f"corpus={corpus}", f"source_checkpoint={SOURCE}", "seeds=[1,2]"])
    opts = SmokeOptions()
    exp = tmp_path / "exp"
    return Plan(smoke_experiment(cfg, opts, first_fold=True), exp / SMOKE_DIR, [{}]), Plan(cfg, exp, [{}]), opts


def test_smoke_json_fields_and_whole_experiment_projection(tmp_path):
    smoke, real, opts = _plans(tmp_path)
    assert smoke.cfg.folds == [1] and smoke.cfg.seeds == [1] and real.cfg.seeds == [1, 2]
    records = {s.key: {"wall_s": 10.0, "peak_rss_gb": 0.5} for s in smoke.stages}
    for stage in smoke.stages:
        if stage.training:
            fairseq_log(stage.out_dir / "hydra_train.log", STEADY)
    summary = summarize(smoke, real, records, opts, {})
    assert json.loads((smoke.exp / SMOKE_FILE).read_text()) == summary
    by_key = {f["key"]: f for f in summary["stages"]}
    tapt = by_key["fold1/tapt"]  # the demo's TAPT: max_update 60, validation every 10 updates, patience 4
    assert tapt["training"]["budget"]["max_update"] == 60 and tapt["training"]["s_per_update"] == pytest.approx(0.5)
    assert tapt["projected_s"] == pytest.approx(10 + 50 * 0.5 + (6 + 3 - 1) * 2.0) and "patience 4" in tapt["note"]
    assert by_key["fold1/reference"]["projected_s"] == 10.0 and by_key["fold1/reference"]["peak_rss_gb"] == 0.5
    assert set(summary["smoke"]) == {"updates", "kmeans_percent", "folds", "failed"}
    exp = summary["experiment"]
    assert exp["stages"] == len(real.stages) and not exp["not_projected"] and set(exp["per_fold_s"]) == {f"fold{k}" for k in range(1, 6)}
    assert exp["total_here_s"] == pytest.approx(exp["shared_s"] + sum(exp["per_fold_s"].values()), abs=0.5)
    assert exp["slurm"]["wall_s"] == pytest.approx(exp["shared_s"] + max(exp["per_fold_s"].values()), abs=0.1)
    seeded = [s for s in real.stages if s.fold == 1 and s.training and s.name != "tapt"]  # seed 2's runs: projected from seed 1's
    assert len(seeded) == 2 * len([s for s in smoke.stages if s.training and s.name != "tapt"])
    text = format_summary(summary)
    again = summarize(smoke, real, {}, opts, {})  # a second smoke run skips what the first completed: its figures stay
    assert again["stages"] == summary["stages"]
    assert "| fold1/tapt | 10 s | 0.500 | 0.50 GB RSS |" in text and "GPU-hours" in text


@pytest.mark.parametrize("smoke_first", [True, False])
def test_smoke_and_real_runs_never_share_a_stage(tmp_path, smoke_first):
    smoke, real, _ = _plans(tmp_path)
    assert all(SMOKE_DIR in s.out_dir.relative_to(real.exp).parts[:1] for s in smoke.stages)
    assert not any(SMOKE_DIR in s.out_dir.relative_to(real.exp).parts[:1] for s in real.stages)
    for done, other in [(smoke, real) if smoke_first else (real, smoke)]:
        stage = next(s for s in done.stages if s.name == "prepare")
        stage.out_dir.mkdir(parents=True)
        stage.done.write_text("{}")
        stage.mark_complete(1.0)
        assert stage.status() == "complete"
        assert next(s for s in other.stages if s.name == "prepare").status() != "complete"


def test_smoke_commands_put_the_budget_after_the_users_overrides(tmp_path):
    corpus = demo_corpus(tmp_path)
    req = RunRequest(DEMO, overrides=[f"corpus={corpus}", f"source_checkpoint={SOURCE}"], exp_dir=tmp_path / "exp", dry_run=True)
    real = run_experiment(req).script
    req.smoke = SmokeOptions(updates=6)
    script = run_experiment(req).script
    tapt = next(line for line in script.splitlines() if "--config-dir" in line and "/tapt " in line)
    assert tapt.index("optimization.max_update=60") < tapt.index("optimization.max_update=6 ") and "checkpoint.patience=-1" in tapt
    assert "--percent 0.1" in script and "/fold2/" not in script and f"{tmp_path / 'exp' / SMOKE_DIR}/fold1/" in script
    assert f"/{SMOKE_DIR}/" not in real and "optimization.max_update=6 " not in real and "/fold2/" in real


@pytest.mark.parametrize("flag, value", [("--smoke-updates", "2"), ("--smoke-kmeans-percent", "0")])
def test_bad_smoke_budget_is_one_line(tmp_path, flag, value):
    corpus = demo_corpus(tmp_path)
    res = run_fesa("run", DEMO, "--smoke", flag, value, f"corpus={corpus}", f"source_checkpoint={SOURCE}", "--exp-dir", tmp_path / "exp")
    assert res.returncode == 2 and flag in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_demo_smoke_runs_every_stage_then_a_failing_stage_names_itself(demo_folds, tmp_path):
    corpus, exp = demo_folds.parent / "corpus", tmp_path / "exp"
    args = ("run", DEMO, "--smoke", f"corpus={corpus}", f"source_checkpoint={SOURCE}", "--exp-dir", exp)
    res = run_fesa(*args)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((exp / SMOKE_DIR / SMOKE_FILE).read_text())
    keys = [f["key"] for f in summary["stages"]]
    assert keys[:4] == ["all/prepare", "fold1/reference", "fold1/tapt-labels", "fold1/tapt"] and len(keys) == 10
    for f in summary["stages"]:
        assert f["wall_s"] > 0 and f["projected_s"] >= f["wall_s"] * 0.99
        assert f["peak_rss_gb"] > 0 if f["training"] else f["peak_rss_gb"] is None or f["peak_rss_gb"] > 0  # sampled: a short stage may slip
        if f["training"]:
            assert f["training"]["updates"] == SmokeOptions().updates and f["training"]["s_per_update"] > 0
    assert summary["experiment"]["stages"] == 46 and "projected on this machine" in res.stdout
    assert len(re.findall(r"\[valid\]", (exp / SMOKE_DIR / "fold1" / "tapt" / "hydra_train.log").read_text())) == 1
    real = run_fesa("run", DEMO, f"corpus={corpus}", f"source_checkpoint={SOURCE}", "--exp-dir", exp, "--dry-run")
    assert "would skip" not in real.stdout and f"/{SMOKE_DIR}/" not in real.stdout  # a real run finds nothing of the smoke

    shutil.rmtree(exp / SMOKE_DIR / "fold1" / "finetune")
    res = run_fesa(*args, "overrides.finetune=[model.no_such_key=1]")
    assert res.returncode == 1 and "fold1/finetune/L2-K50-attention failed" in res.stderr and "last lines of" in res.stderr
    assert json.loads((exp / SMOKE_DIR / SMOKE_FILE).read_text())["smoke"]["failed"]


def test_smoke_on_slurm_submits_the_smoke_plan_as_its_own_jobs(tmp_path):
    corpus = demo_corpus(tmp_path)
    exp = tmp_path / "exp"
    overrides = [f"corpus={corpus}", f"source_checkpoint={SOURCE}"]
    req = RunRequest(DEMO, overrides=overrides, exp_dir=exp, grid=["pooling=attention,mean"], dry_run=True, slurm=True, smoke=SmokeOptions())
    outcome = run_experiment(req)
    assert outcome.exp == (exp / SMOKE_DIR).resolve() and len(outcome.sbatch) == 10  # one fold, the first grid cell
    scripts = "".join(p.read_text() for p in (exp / SMOKE_DIR / "slurm").glob("*.sbatch"))
    assert f"--exp-dir {exp.resolve() / SMOKE_DIR}" in scripts and "--grid pooling=attention" in scripts and "pooling=mean" not in scripts
    assert "optimization.max_update=10" in (exp / SMOKE_DIR / "experiment.yaml").read_text()  # what each job's plan is built from


def test_a_local_smoke_run_trains_on_the_gpus_this_machine_has():
    cfg = ExperimentConfig(source_checkpoint="bootstrap", folds=[1, 2])
    cfg.slurm.gpus = 4
    have = max(torch.cuda.device_count(), 1)
    assert smoke_experiment(cfg, SmokeOptions(), True).slurm.gpus == min(4, have)  # fairseq refuses a world size above the devices
    assert smoke_experiment(cfg, SmokeOptions(), True, local=False).slurm.gpus == 4  # SLURM jobs get what they ask for
    assert cfg.slurm.gpus == 4 and smoke_experiment(cfg, SmokeOptions(), True).folds == [1]
