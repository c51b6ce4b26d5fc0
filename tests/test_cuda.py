"""The same code on CUDA as on the CPU. Runs where torch sees a GPU; skipped elsewhere (CI has none)."""

import csv
import json

import numpy as np
import pytest
import torch

from tiny_hubert import finetune, run_fesa

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device: run on a GPU machine")


def _predictions(out):
    with open(out / "predictions.tsv") as f:
        return {row["utt_id"]: row for row in csv.DictReader(f, delimiter="\t")}


def test_finetune_on_cuda_then_evaluate_on_both_devices(stock_hubert, demo_folds, tmp_path):
    run = tmp_path / "ft"
    res = finetune(demo_folds / "fold1", stock_hubert, run, "optimization.max_update=6", "dataset.max_tokens=480000", "common.log_interval=1")
    assert res.returncode == 0, res.stderr[-4000:]
    log = (run / "hydra_train.log").read_text()
    assert "gb_free" in log, "fairseq logs GPU memory only when it trains on CUDA"
    ckpt = run / "checkpoints" / "checkpoint_best.pt"
    outs = {}
    for device in ("cuda", "cpu"):
        outs[device] = tmp_path / f"eval_{device}"
        res = run_fesa("-q", "evaluate", ckpt, demo_folds / "fold1", "--split", "test", "--out", outs[device], "--device", device)
        assert res.returncode == 0, res.stderr[-3000:]
    gpu, cpu = _predictions(outs["cuda"]), _predictions(outs["cpu"])
    assert gpu.keys() == cpu.keys() and len(gpu) > 0
    p_cols = [c for c in next(iter(cpu.values())) if c.startswith("p_")]
    assert p_cols
    diff = max(abs(float(gpu[u][c]) - float(cpu[u][c])) for u in cpu for c in p_cols)
    assert diff < 1e-3, f"class probabilities differ by {diff} between CUDA and the CPU"
    metrics = {d: json.loads((outs[d] / "metrics.json").read_text()) for d in outs}
    assert metrics["cuda"]["ua"] == pytest.approx(metrics["cpu"]["ua"])


def test_pseudo_labels_on_cuda_agree_with_cpu(stock_hubert, demo_folds, tmp_path):
    """CUDA features through the CPU run's centroids give the CPU's labels (TF32 convolutions may move a few)."""
    labels = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        how = ["--clusters", "8"] if device == "cpu" else ["--kmeans-model", tmp_path / "cpu" / "kmeans.bin"]
        res = run_fesa(
            "-q",
            "pseudo-labels",
            "--manifest-dir",
            demo_folds / "fold1",
            "--checkpoint",
            stock_hubert,
            "--layer",
            "1",
            *how,
            "--out",
            out,
            "--device",
            device,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        labels[device] = np.concatenate([np.array(line.split(), dtype=int) for line in (out / "train.km").read_text().splitlines()])
    assert labels["cuda"].shape == labels["cpu"].shape
    agreement = float((labels["cuda"] == labels["cpu"]).mean())
    assert agreement >= 0.98, f"CUDA and CPU labels agree on {agreement:.3f} of frames"
