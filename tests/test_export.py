"""fesa export --onnx: a real tiny classifier through torch.onnx and onnxruntime, against PyTorch."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fesa.inference.recognizer import EmotionRecognizer

from tiny_hubert import run_fesa

onnxruntime = pytest.importorskip("onnxruntime", reason="the [export] extra (make install brings it)")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "onnx" / "run_onnx.py"
BLOCK_TORCH = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "fairseq", "fesa_fairseq"):
            raise ImportError(f"{name} is not importable here")
sys.meta_path.insert(0, Blocked())
sys.argv = sys.argv[1:]
exec(compile(open(sys.argv[0]).read(), sys.argv[0], "exec"))
"""


@pytest.fixture(scope="module")
def checkpoint(finetuned_classifier):
    return finetuned_classifier / "checkpoints" / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "classifier.onnx"
    res = run_fesa("export", checkpoint, "--onnx", out, "--int8")
    assert res.returncode == 0, res.stderr[-3000:]
    return out, res.stdout


@pytest.mark.parametrize("seconds", [0.1, 0.8, 1.51, 4.0])
def test_onnx_matches_pytorch_at_every_length(exported, checkpoint, seconds):
    """Odd and even frame counts, shorter and longer than the export's example input."""
    out, _ = exported
    recognizer = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu")
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    wav = (0.1 * np.random.default_rng(int(seconds * 100)).standard_normal(int(seconds * 16000))).astype(np.float32)
    logits, posteriors, weights = session.run(None, {"waveform": wav[None]})
    with torch.no_grad():
        expected = recognizer.model(torch.from_numpy(wav)[None], None)
    np.testing.assert_allclose(logits, expected["logits"].numpy(), atol=1e-3, rtol=0)
    prediction = recognizer.predict(wav, 16000)
    np.testing.assert_allclose(posteriors[0], prediction.frame_posteriors, atol=1e-4, rtol=0)
    np.testing.assert_allclose(weights[0], prediction.pooling_weights, atol=1e-5, rtol=0)
    assert weights.sum() == pytest.approx(1.0, abs=1e-5)


def test_metadata_and_int8_twin(exported):
    out, stdout = exported
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["labels"]) == ["neu", "hap", "ang", "sad"] and meta["sample_rate"] == "16000"
    int8 = out.with_name("classifier.int8.onnx")
    assert int8.stat().st_size < out.stat().st_size
    wav = np.zeros((1, 16000), dtype=np.float32)
    assert onnxruntime.InferenceSession(str(int8)).run(["logits"], {"waveform": wav})[0].shape == (1, 4)
    expected = [  # every line of what fesa export printed, in order
        r"classes \['neu', 'hap', 'ang', 'sad'\]; checked on (\d+) lengths \((\d+(, )?)+ samples\):",
        r"  fp32: max \|logit difference\| vs PyTorch (\S+), same label (\d+)/\2",
        r"  int8: max \|logit difference\| vs PyTorch (\S+), same label \d+/\d+",
        rf"wrote {re.escape(str(out))}, {re.escape(str(int8))}",
    ]
    lines = stdout.splitlines()
    assert len(lines) == len(expected), stdout
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), (line, pattern)
    assert float(re.fullmatch(expected[1], lines[1]).group(1)) <= 1e-3


def test_the_readme_example_runs_without_torch_or_fairseq(exported, checkpoint, tmp_path):
    """examples/onnx/run_onnx.py on a 22.05 kHz stereo file, torch and fairseq unimportable; same label as PyTorch."""
    out, _ = exported
    rng = np.random.default_rng(3)
    stereo = (0.1 * rng.standard_normal((int(22050 * 2.3), 2))).astype(np.float32)
    wav = tmp_path / "speech.wav"
    sf.write(wav, stereo, 22050)
    res = subprocess.run([sys.executable, "-c", BLOCK_TORCH, str(EXAMPLE), str(out), str(wav)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    expected = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu").predict(str(wav)).label
    assert res.stdout.split()[0] == expected
    assert len([line for line in res.stdout.splitlines() if line.strip().endswith(tuple(["neu", "hap", "ang", "sad"]))]) >= 3


def test_wrong_checkpoint_and_name_are_refused(stock_hubert, tmp_path):
    res = run_fesa("export", stock_hubert, "--onnx", tmp_path / "x.onnx")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "not a fine-tuned hubert_emotion_classifier: give the checkpoint_best.pt of a fine-tuning run" in res.stderr.strip().splitlines()[-1]
    res = run_fesa("export", stock_hubert, "--onnx", tmp_path / "x.pt")
    assert res.returncode == 2 and "ending in .onnx" in res.stderr
    assert not list(tmp_path.iterdir())
