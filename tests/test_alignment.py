"""fesa alignment: purity, NMI and the linear probe of frames against their true state, on cases with known answers."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fesa.corpora.demo import DEMO_SEGMENTS_FILE
from fesa.inference.references import segment_truth
from fesa.labels.alignment import frame_states, measure_alignment

from tiny_hubert import run_fesa


def test_frame_states_by_hand():
    """2 s at 10 frames a second; angry from 0.5 to 1.0 s: frames 5..9 (centres 0.55 .. 0.95)."""
    events = [{"emo": "ang", "start": 0.5, "end": 1.0}, {"emo": "neu", "start": 1.0, "end": 2.0}]
    assert frame_states(20, 10.0, events, ["neu", "hap", "ang", "sad"], "neu").tolist() == [0] * 5 + [2] * 5 + [0] * 10


class StateReader:
    """Frames that are their true state (one-hot, plus noise), or pure noise: the two ends of alignment."""

    def __init__(self, truth, aligned: bool, classes=("neu", "hap", "ang", "sad")):
        self.truth, self.aligned, self.classes = truth, aligned, list(classes)
        self.label_rate, self.checkpoint, self.layer = 50.0, "made-up", 1
        self.rng = np.random.default_rng(0)

    def get_feats(self, path, size):
        n = (size - 400) // 320 + 1
        states = frame_states(n, 50.0, self.truth[Path(path).stem]["emotion"], self.classes, "neu")
        noise = self.rng.standard_normal((n, 8))
        x = noise * 0.05 + np.eye(8)[states] * 3 if self.aligned else noise
        return torch.from_numpy(x.astype(np.float32))


@pytest.fixture(scope="module")
def truth(demo_folds):
    return segment_truth(demo_folds.parent / "corpus" / DEMO_SEGMENTS_FILE, demo_folds / "fold1")


def test_segment_lines_become_the_folds_truth(truth, demo_folds):
    """The demo's lines, for the fold: its utterances only, their wavs' durations, IEMOCAP's exc counted as hap."""
    listing = [line.split("\t") for line in (demo_folds / "utterances.tsv").read_text().splitlines()]
    code = {row[0]: row[listing[0].index("code")] for row in listing[1:]}
    assert set(truth) == set(code) and "exc" in code.values()
    for utt, entry in truth.items():
        assert entry["duration"] == pytest.approx(sf.info(entry["wav"]).duration, abs=1e-3)
        labels = {e["emo"] for e in entry["emotion"]}
        assert labels <= ({"neu", "hap"} if code[utt] == "exc" else {"neu", code[utt]}), (utt, labels)


def test_frames_that_are_their_state_are_perfectly_aligned(truth, demo_folds):
    r = measure_alignment(StateReader(truth, True), demo_folds / "fold1", truth, clusters=4, progress=False)
    assert r["purity"] == 1.0 and r["nmi"] > 0.99 and r["probe_ua"] == 100.0
    assert r["test_frames"] > 0 and sum(r["test_state_shares"].values()) == pytest.approx(1.0, abs=1e-3)


def test_noise_frames_are_not(truth, demo_folds):
    r = measure_alignment(StateReader(truth, False), demo_folds / "fold1", truth, clusters=8, progress=False)
    assert r["purity"] < r["majority_share"] + 0.05 and r["nmi"] < 0.05
    assert r["probe_ua"] < r["chance_ua"] + 10


def test_cli_on_a_real_model(stock_hubert, demo_folds, tmp_path):
    reference = demo_folds.parent / "corpus" / DEMO_SEGMENTS_FILE
    args = ("--layer", "1", "--clusters", "6", "--reference", reference, "--out", tmp_path / "a", "--device", "cpu")
    res = run_fesa("alignment", stock_hubert, demo_folds / "fold1", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads((tmp_path / "a" / "alignment.json").read_text())
    assert r["layer"] == 1 and r["clusters"] == 6 and 0 < r["purity"] <= 1 and 0 <= r["nmi"] <= 1 and 0 <= r["probe_ua"] <= 100
    assert "linear probe: frame UA" in res.stdout


def test_segments_of_other_utterances_are_named(stock_hubert, tmp_path):
    from tiny_hubert import write_audio_split

    fold = tmp_path / "fold"
    for split, seed in (("train", 0), ("test", 1)):
        write_audio_split(fold, tmp_path / "wav", split, 3, seed)
        (fold / f"{split}.emo").write_text("neu\nhap\nneu\n")
    (fold / "dict.emo.txt").write_text("neu 2\nhap 1\n")
    res = run_fesa("alignment", stock_hubert, fold, "--layer", "1", "--out", tmp_path / "a", "--device", "cpu")
    assert res.returncode == 2 and "required: --reference" in res.stderr
    (tmp_path / "other.tsv").write_text("elsewhere 0.1 0.5 hap\n")
    res = run_fesa("alignment", stock_hubert, fold, "--layer", "1", "--reference", tmp_path / "other.tsv", "--out", tmp_path / "a", "--device", "cpu")
    assert res.returncode == 2 and "has true segments: nothing to measure" in res.stderr
