"""A stage stopped part-way resumes only under the fingerprint it started with; fesa's children die with it."""

import json
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from tiny_hubert import TINY_RUN, run_fesa


def alive(pattern: str) -> bool:
    return subprocess.run(["pgrep", "-f", pattern], capture_output=True).returncode == 0


def start_and_kill_when(config, exp, stages, ready, timeout=120):
    """fesa run in the background, SIGKILLed (the parent only) as soon as `ready()` holds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fesa.cli", "run", str(config), "--exp-dir", str(exp), "--stages", stages],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, "fesa run ended before the stage was under way"
        assert time.time() < deadline, "the stage never got under way"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def write(config, cfg):
    config.write_text(yaml.safe_dump(cfg))


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, demo_folds):
    base = tmp_path_factory.mktemp("resume")
    cfg = {"corpus": str(demo_folds.parent / "corpus"), **TINY_RUN}
    config, exp = base / "experiment.yaml", base / "exp"
    write(config, cfg)
    res = run_fesa("run", config, "--exp-dir", exp, "--stages", "prepare:emotion-labels")
    assert res.returncode == 0, res.stderr[-4000:]
    return config, exp, cfg


@pytest.mark.slow
def test_killed_training_is_not_resumed_under_another_command_and_leaves_no_trainer(experiment):
    config, exp, cfg = experiment
    run_dir = exp / "fold1" / "cpt" / "L1-K6"
    long = {**cfg, "overrides": {**cfg["overrides"], "cpt": ["optimization.max_update=100000"]}}
    write(config, long)
    start_and_kill_when(config, exp, "cpt", lambda: (run_dir / "checkpoints" / "checkpoint_last.pt").is_file())
    deadline = time.time() + 30
    while alive(f"hydra.run.dir={run_dir}") and time.time() < deadline:
        time.sleep(0.5)
    assert not alive(f"hydra.run.dir={run_dir}"), "the trainer outlived fesa run"
    assert json.loads((run_dir / ".fesa-stage.json").read_text())["state"] == "started"

    masked = {**cfg, "overrides": {**cfg["overrides"], "cpt": ["optimization.max_update=3", "model.mask_prob=0.5"]}}
    write(config, masked)
    res = run_fesa("run", config, "--exp-dir", exp, "--stages", "cpt")
    assert res.returncode == 0, res.stderr[-4000:]
    assert "moved it to" in res.stderr and len(list(run_dir.parent.glob("L1-K6.stale-*"))) == 1
    log = (run_dir / "hydra_train.log").read_text()
    assert "loaded checkpoint" not in log.lower()  # trained afresh, not resumed from the killed run
    state = torch.load(run_dir / "checkpoints" / "checkpoint_last.pt", weights_only=False)
    assert state["optimizer_history"][-1]["num_updates"] == 3 and state["cfg"]["model"]["mask_prob"] == 0.5
    write(config, cfg)


@pytest.mark.slow
def test_labels_interrupted_then_inputs_changed_come_from_the_new_checkpoint(experiment, tmp_path):
    config, exp, cfg = experiment
    labels = exp / "fold1" / "emotion-labels" / "L1-K6"
    stamp = labels / ".fesa-stage.json"
    # Interrupted after it started (its stamp says so) ...
    record = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**record, "state": "started"}))
    # ... and the model it reads is then fine-tuned again, differently.
    changed = {**cfg, "overrides": {**cfg["overrides"], "tapt_finetune": ["optimization.max_update=2"]}}
    write(config, changed)
    res = run_fesa("run", config, "--exp-dir", exp, "--stages", "tapt-finetune,emotion-labels")
    assert res.returncode == 0, res.stderr[-4000:]
    assert len(list(labels.parent.glob("L1-K6.stale-*"))) == 1
    fresh = tmp_path / "fresh"
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        exp / "manifests" / "fold1",
        "--splits",
        "train,valid",
        "--checkpoint",
        exp / "fold1" / "tapt-finetune" / "checkpoints" / "checkpoint_best.pt",
        "--layer",
        "1",
        "--clusters",
        "6",
        "--percent",
        "-1.0",
        "--out",
        fresh,
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for split in ("train", "valid"):
        assert (labels / f"{split}.km").read_text() == (fresh / f"{split}.km").read_text()
    write(config, cfg)


@pytest.mark.slow
def test_sigterm_to_fesa_stops_and_waits_for_its_stage(experiment):
    config, exp, cfg = experiment
    run_dir = exp / "fold1" / "finetune" / "L1-K6-attention"
    long = {**cfg, "overrides": {**cfg["overrides"], "finetune": ["optimization.max_update=100000"]}}
    write(config, long)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fesa.cli", "run", str(config), "--exp-dir", str(exp), "--stages", "cpt:finetune"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 180
    while not (run_dir / "hydra_train.log").is_file():
        assert proc.poll() is None and time.time() < deadline, "the fine-tuning never started"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode != 0 and "stopping" in err
    assert not alive(f"hydra.run.dir={run_dir}")
    assert not (exp / ".fesa-run.lock").exists()
    write(config, cfg)
