"""--precision: what each device may run, the refusals, and bf16 results against fp32 on real tiny models."""

import json
import logging

import numpy as np
import pytest
import torch

from fesa import devices
from fesa.devices import resolve_precision
from fesa.errors import FesaError
from fesa.inference.recognizer import EmotionRecognizer
from fesa.labels.readers import HubertFeatureReader
from fesa_fairseq.data.files import read_manifest

from tiny_hubert import run_fesa

CPU = torch.device("cpu")
needs_bf16_cpu = pytest.mark.skipif(not devices.cpu_has_bf16(), reason="this CPU has no bf16 instructions (AVX512-BF16 or AMX)")


@pytest.mark.parametrize("has_bf16, expected", [(True, torch.bfloat16), (False, None)])
def test_auto_on_the_cpu_follows_its_instructions(monkeypatch, caplog, has_bf16, expected):
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: has_bf16)
    with caplog.at_level(logging.INFO, logger="fesa.devices"):
        assert resolve_precision("auto", CPU) is expected
    assert f"precision auto: {'bf16' if has_bf16 else 'fp32'} on cpu" in caplog.text


def test_choices_the_cpu_cannot_run_are_refused(monkeypatch):
    assert resolve_precision("fp32", CPU) is None
    with pytest.raises(FesaError, match="fp16 runs on CUDA only"):
        resolve_precision("fp16", CPU)
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    with pytest.raises(FesaError, match="this CPU has no bf16 arithmetic; use fp32"):
        resolve_precision("bf16", CPU)
    with pytest.raises(FesaError, match="choose one of auto, fp32, bf16, fp16"):
        resolve_precision("int8", CPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_cuda():
    dtype = resolve_precision("auto", torch.device("cuda"))
    assert dtype is (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert resolve_precision("fp16", torch.device("cuda")) is torch.float16


def test_refusal_is_one_line_before_anything_is_written(stock_hubert, demo_folds, tmp_path):
    out = tmp_path / "out"
    args = ["--manifest-dir", demo_folds / "fold1", "--checkpoint", stock_hubert, "--layer", "1", "--clusters", "4", "--out", out]
    res = run_fesa("-q", "pseudo-labels", *args, "--device", "cpu", "--precision", "fp16")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("fesa pseudo-labels: error: --precision fp16 runs on CUDA only")
    assert not out.exists()


@needs_bf16_cpu
def test_bf16_features_and_labels_follow_fp32(stock_hubert, demo_folds, tmp_path):
    """Same centroids, features dumped both ways: bf16 labels agree with fp32's on nearly every frame."""
    fold = demo_folds / "fold1"
    fp32 = HubertFeatureReader(str(stock_hubert), 2, CPU, precision="fp32")
    bf16 = HubertFeatureReader(str(stock_hubert), 2, CPU, precision=torch.bfloat16)
    root, rows = read_manifest(fold / "valid.tsv")
    a = torch.cat([fp32.get_feats(f"{root}/{p}", n) for p, n in rows])
    b = torch.cat([bf16.get_feats(f"{root}/{p}", n) for p, n in rows])
    assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
    assert not torch.equal(a, b)  # autocast did run
    assert torch.nn.functional.cosine_similarity(a, b, dim=-1).min() > 0.99
    centroids = a[torch.randperm(len(a), generator=torch.Generator().manual_seed(0))[:8]]
    agree = (torch.cdist(a, centroids).argmin(1) == torch.cdist(b, centroids).argmin(1)).float().mean()
    assert agree > 0.95
    out = tmp_path / "km"
    args = ["--manifest-dir", fold, "--checkpoint", stock_hubert, "--layer", "1", "--clusters", "4", "--splits", "train,valid"]
    res = run_fesa("-q", "pseudo-labels", *args, "--out", out, "--device", "cpu", "--precision", "bf16")
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads((out / "labels.json").read_text())["precision"] == "bf16"


@needs_bf16_cpu
def test_bf16_scoring_follows_fp32(finetuned_classifier, demo_folds, tmp_path):
    checkpoint = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    metrics = {}
    for precision in ("fp32", "bf16"):
        res = run_fesa("-q", "evaluate", checkpoint, demo_folds / "fold1", "--out", tmp_path / precision, "--device", "cpu", "--precision", precision)
        assert res.returncode == 0, res.stderr[-2000:]
        metrics[precision] = json.loads((tmp_path / precision / "metrics.json").read_text())
        assert metrics[precision]["precision"] == precision
    prob = {p: np.loadtxt(tmp_path / p / "predictions.tsv", skiprows=1, usecols=(3, 4, 5, 6), delimiter="\t", ndmin=2) for p in metrics}
    assert 0 < np.abs(prob["fp32"] - prob["bf16"]).max() < 0.05
    recognizer = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu", precision="bf16")
    assert recognizer.precision is torch.bfloat16
    wav = np.random.default_rng(0).standard_normal(24000).astype(np.float32) * 0.1
    reference = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu").predict(wav, 16000)
    np.testing.assert_allclose(recognizer.predict(wav, 16000).probabilities, reference.probabilities, atol=0.05)
