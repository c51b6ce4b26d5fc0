"""fesa run --slurm under a real SLURM controller: a one-node cluster on this machine (examples/slurm/local_cluster.sh).

Needs root and Debian's slurm-wlm and munge (`make slurm-deps`; .ci/run installs them). Skipped, saying why, where
either is missing. The cluster is stopped whatever happens.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tiny_hubert import TINY_RUN, run_fesa

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "slurm" / "local_cluster.sh"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() != 0, reason="a local SLURM cluster needs root (slurmd runs jobs as their user)"),
    pytest.mark.skipif(
        shutil.which("slurmctld") is None or shutil.which("munged") is None, reason="needs slurm-wlm and munge: make slurm-deps (apt-get)"
    ),
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "FESA_SLURM_DIR": str(home), "FESA_SLURMCTLD_PORT": "26817", "FESA_SLURMD_PORT": "26818"}
    try:
        res = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stdout + res.stderr + "".join(p.read_text() for p in (home / "log").glob("*.log"))
        yield {"SLURM_CONF": str(home / "slurm.conf"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=120)


def experiment(base: Path, demo_folds, tapt_updates: int) -> Path:
    overrides = {**TINY_RUN["overrides"], "tapt": [f"optimization.max_update={tapt_updates}", "checkpoint.save_interval_updates=20"]}
    slurm = {"gpus": 0, "cpus_per_task": 1, "mem": "2G", "time_train": "00:30:00", "time_other": "00:10:00"}
    config = base / "experiment.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(demo_folds.parent / "corpus"), **TINY_RUN, "overrides": overrides, "slurm": slurm}))
    return config


def status(exp: Path, env, *args: str):
    res = run_fesa("status", exp, *args, env=env)
    states = "complete|running|pending|failed|cancelled|interrupted|stale|to do"
    rows = {m.group(1): m.group(2) for m in re.finditer(rf"^(\S+/\S+)\s+({states})\b", res.stdout, re.M)}
    return res, rows


def submitted(stdout: str):
    return sorted(re.findall(r"/slurm/(\S+)\.sbatch$", stdout, re.M))


def test_the_pipeline_completes_under_slurm(cluster, demo_folds, tmp_path):
    config, exp = experiment(tmp_path, demo_folds, 3), tmp_path / "exp"
    res = run_fesa("run", config, "--exp-dir", exp, "--slurm", env=cluster)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(submitted(res.stdout)) == 10 and "--kill-on-invalid-dep=yes" in res.stdout
    res, rows = status(exp, cluster, "--wait", "--interval", "2")
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]
    assert len(rows) == 10 and set(rows.values()) == {"complete"}, res.stdout
    jobs = json.loads((exp / "slurm" / "jobs.json").read_text())
    assert len(jobs) == 10 and all((exp / "logs" / "slurm" / f"fesa-{key.replace('/', '-')}-{job}.log").is_file() for key, job in jobs.items())
    stamps = [json.loads(p.read_text()) for p in exp.rglob(".fesa-stage.json")]
    assert len(stamps) == 10 and all(stamp["state"] == "complete" for stamp in stamps)
    res = run_fesa("report", exp)
    assert res.returncode == 0 and json.loads((exp / "report" / "report.json").read_text())["baseline"]["folds"] == [1]
    res = run_fesa("run", config, "--exp-dir", exp, "--slurm", env=cluster)  # nothing left: no job
    assert res.returncode == 0 and submitted(res.stdout) == []


def test_a_cancelled_training_is_resubmitted_with_only_what_is_unfinished(cluster, demo_folds, tmp_path):
    config, exp = experiment(tmp_path, demo_folds, 40), tmp_path / "exp"
    res = run_fesa("run", config, "--exp-dir", exp, "--slurm", env=cluster)
    assert res.returncode == 0, res.stderr[-3000:]
    tapt = json.loads((exp / "slurm" / "jobs.json").read_text())["fold1/tapt"]
    deadline = time.monotonic() + 300
    while status(exp, cluster)[1].get("fold1/tapt") != "running":
        assert time.monotonic() < deadline, status(exp, cluster)[0].stdout
        time.sleep(1)
    time.sleep(3)  # into its training loop
    subprocess.run(["scancel", tapt], env={**os.environ, **cluster}, check=True)
    res, rows = status(exp, cluster, "--wait", "--interval", "2")
    assert res.returncode == 1 and "failed or were cancelled" in res.stderr
    assert rows["fold1/tapt"] == "cancelled" and rows["all/prepare"] == rows["fold1/tapt-labels"] == "complete"
    after = ["fold1/tapt-finetune", "fold1/evaluate/baseline", "fold1/emotion-labels/L1-K6", "fold1/cpt/L1-K6", "fold1/finetune/L1-K6-attention"]
    assert all(rows[key] == "cancelled" for key in after), res.stdout
    assert "its input job failed or was cancelled" in res.stdout
    unfinished = sorted(key.replace("/", "__") for key, state in rows.items() if state != "complete")

    res = run_fesa("run", config, "--exp-dir", exp, "--slurm", env=cluster)
    assert res.returncode == 0, res.stderr[-3000:]
    assert submitted(res.stdout) == unfinished  # the reference, prepare and tapt-labels are not run again
    res = run_fesa("run", config, "--exp-dir", exp, "--slurm", env=cluster)  # queued already: no second job
    assert res.returncode == 0 and submitted(res.stdout) == [] and "not submitted again" in res.stderr
    res, rows = status(exp, cluster, "--wait", "--interval", "2")
    assert res.returncode == 0 and set(rows.values()) == {"complete"}, res.stdout + res.stderr[-2000:]
