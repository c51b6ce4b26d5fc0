"""fesa predict, the recognizer API, EDER and the frame-level figures, on a tiny classifier fine-tuned for real."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from scipy.signal import resample_poly

from fesa.checkpoints import HUBERT_GEOMETRY
from fesa.corpora.demo import DEMO_SEGMENTS_FILE
from fesa.errors import FesaError
from fesa.inference.eder import eder, read_segments_json, reference_spans, utterance_eder
from fesa.inference.recognizer import EmotionRecognizer, plan_windows
from fesa.inference.references import convert_references
from fesa.inference.segments import frames_to_segments
from fesa_fairseq.data.audio import AudioSource
from fesa_fairseq.pooling.mean import MeanPooling
from fesa_fairseq.scoring import macro_f1

from tiny_hubert import run_fesa


@pytest.fixture(scope="module")
def checkpoint(finetuned_classifier):
    return finetuned_classifier / "checkpoints" / "checkpoint_best.pt"


@pytest.fixture(scope="module")
def recognizer(checkpoint):
    return EmotionRecognizer.from_checkpoint(checkpoint, device="cpu")


def speechbrain_eder(prediction, duration: float, emotion, window_length: float, stride: float) -> float:
    """SpeechBrain's ``EDER(prediction, id, duration, emotion, window_length, stride)``: one prediction per window
    of ``window_length`` seconds every ``stride`` seconds, neutral 'n', first letters compared."""
    windows = [(stride * i, stride * i + window_length, p) for i, p in enumerate(prediction)]
    return utterance_eder(windows, reference_spans(emotion, duration, "n"), duration, first_letter=True)


def test_speechbrain_documented_example():
    """utterance_eder given SpeechBrain's input gives the figure of SpeechBrain's documented example."""
    emotion = [{"emo": "angry", "start": 0.39, "end": 1.10}]
    assert speechbrain_eder(["n", "n", "n", "a", "a", "a"], 1.22, emotion, 0.2, 0.2) == pytest.approx(0.2704918032786885, abs=1e-15)


@pytest.mark.parametrize(
    "hyp, ref, expected",
    [
        ([(0, 1, "ang")], [(0, 1, "ang")], 0.0),
        ([(0, 1, "neu")], [(0, 0.5, "neu"), (0.5, 1, "ang")], 0.5),
        ([(0, 0.6, "neu"), (0.4, 1.0, "ang")], [(0, 0.5, "neu"), (0.5, 1, "ang")], 0.0),  # the overlap is split evenly
        ([(0, 0.3, "sad"), (0.3, 0.6, "sad"), (0.6, 1.0, "neu")], [(0, 0.6, "sad"), (0.6, 1.0, "neu")], 0.0),  # merged
        ([(0, 0.25, "hap"), (0.25, 1.0, "neu")], [(0, 0.5, "hap"), (0.5, 1.0, "neu")], 0.25),
    ],
)
def test_eder_hand_cases(hyp, ref, expected):
    assert utterance_eder(hyp, ref, 1.0) == pytest.approx(expected)


def test_eder_with_several_reference_events():
    """Time between events is neutral; with one event this is SpeechBrain's reference."""
    reference = {"u": {"duration": 2.0, "emotion": [{"emo": "ang", "start": 0.2, "end": 0.6}, {"emo": "sad", "start": 1.0, "end": 1.5}]}}
    hypothesis = {
        "u": {
            "duration": 2.0,
            "emotion": [{"emo": "neu", "start": 0.0, "end": 0.2}, {"emo": "ang", "start": 0.2, "end": 1.0}, {"emo": "sad", "start": 1.0, "end": 2.0}],
        }
    }
    m = eder(reference, hypothesis)
    assert m["eder"] == pytest.approx(100 * (0.4 + 0.5) / 2.0)  # 0.6-1.0 should be neu, 1.5-2.0 too
    assert m["confusion_seconds"]["neu"]["ang"] == pytest.approx(0.4) and m["confusion_seconds"]["sad"]["sad"] == pytest.approx(0.5)
    with pytest.raises(FesaError, match="no entry for 1 reference utterance"):
        eder({**reference, "v": reference["u"]}, hypothesis)


def test_frame_logits_decompose_the_utterance_logits(recognizer):
    """No projection layer: the utterance logits are the pooling-weighted sum of per-frame logits (1e-5)."""
    model = recognizer.model
    source = torch.randn(2, 24000)
    padding = torch.zeros(2, 24000, dtype=torch.bool)
    padding[1, 15000:] = True
    trained = model.pooling
    try:
        for pooling in (trained, MeanPooling(64)):
            model.pooling = pooling
            with torch.no_grad():
                logits = model(source, padding)["logits"]
                out = model.frame_outputs(source, padding)
            weights = torch.softmax(out["log_weights"], dim=-1)
            torch.testing.assert_close((weights.unsqueeze(-1) * out["frame_logits"]).sum(1), logits, atol=1e-5, rtol=0)
    finally:
        model.pooling = trained  # the recognizer is shared by the module's tests


def test_predict_on_one_window_is_the_models_forward(recognizer, demo_folds):
    root, rel = (demo_folds / "fold1" / "test.tsv").read_text().splitlines()[:2]
    path = f"{root}/{rel.split(chr(9))[0]}"
    wav, _ = sf.read(path, dtype="float32")
    pred = recognizer.predict(path)
    with torch.no_grad():
        logits = recognizer.model(torch.from_numpy(wav)[None])["logits"][0]
    np.testing.assert_allclose(pred.probabilities, torch.softmax(logits, -1).numpy(), atol=1e-5)
    assert pred.frame_posteriors.shape == (HUBERT_GEOMETRY.frames(len(wav)), 4) and pred.label in ("neu", "hap", "ang", "sad")
    np.testing.assert_allclose(pred.frame_posteriors.sum(1), 1.0, atol=1e-5)
    assert pred.pooling_weights.sum() == pytest.approx(1.0, abs=1e-5)
    assert pred.segments[0].start == 0 and pred.segments[-1].end == pytest.approx(len(wav) / 16000, abs=1e-3)
    assert all(a.end == b.start for a, b in zip(pred.segments, pred.segments[1:]))


def test_with_a_projection_layer_the_file_result_is_the_head_on_the_pooled_frames(recognizer, demo_folds):
    """A tanh projection makes the head non-linear: frames still get the head's output, the utterance gets the head
    applied to the pooled frames, exactly as the model's forward."""
    root, rel = (demo_folds / "fold1" / "test.tsv").read_text().splitlines()[:2]
    wav, _ = sf.read(f"{root}/{rel.split(chr(9))[0]}", dtype="float32")
    head = recognizer.model.head
    torch.manual_seed(0)
    recognizer.model.head = torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Tanh(), torch.nn.Linear(8, 4)).eval()
    try:
        pred = recognizer.predict(wav, sample_rate=16000)
        with torch.no_grad():
            logits = recognizer.model(torch.from_numpy(wav)[None])["logits"][0]
            out = recognizer.model.frame_outputs(torch.from_numpy(wav)[None])
    finally:
        recognizer.model.head = head
    np.testing.assert_allclose(pred.probabilities, torch.softmax(logits, -1).numpy(), atol=1e-5)
    np.testing.assert_allclose(pred.frame_posteriors, torch.softmax(out["frame_logits"][0], -1).numpy(), atol=1e-5)


def test_long_recording_is_stitched_from_the_most_central_window(recognizer, tmp_path):
    """Each frame is the owning window's own frame (the window where the frame is most central); attention is global
    within a window, so a windowed pass is not a whole-file pass, and no test can claim it is."""
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(16000 * 11)).astype(np.float32)
    recognizer.window, recognizer.hop = 4.0, 3.0
    try:
        pred = recognizer.predict(wav, sample_rate=16000)
    finally:
        recognizer.window, recognizer.hop = 20.0, 15.0
    plan = plan_windows(len(wav), 4.0, 3.0)
    assert len(plan.starts) == 4 and plan.keep[0][0] == 0 and plan.keep[-1][1] == HUBERT_GEOMETRY.frames(len(wav))
    assert all(a[1] == b[0] for a, b in zip(plan.keep, plan.keep[1:]))
    for start, (a, b) in zip(plan.starts, plan.keep):
        window = torch.from_numpy(wav[start : start + plan.length])[None]
        with torch.no_grad():
            own = torch.softmax(recognizer.model.frame_outputs(window)["frame_logits"][0], -1).numpy()
        first = start // HUBERT_GEOMETRY.hop
        np.testing.assert_allclose(pred.frame_posteriors[a:b], own[a - first : b - first], atol=1e-5)
        centre = first + len(own) / 2
        assert abs((a + b) / 2 - centre) < len(own) / 2  # kept frames lie around the window's centre


def test_windows_cover_every_frame_once():
    for seconds in (0.03, 3.0, 20.0, 20.02, 47.3, 3600.0):
        samples = int(seconds * 16000)
        plan = plan_windows(samples, 20.0, 15.0)
        kept = sum(b - a for a, b in plan.keep)
        assert kept == HUBERT_GEOMETRY.frames(samples) and all(s % HUBERT_GEOMETRY.hop == 0 for s in plan.starts)
        assert plan.starts[-1] + plan.length >= samples


def test_resampling_window_by_window_equals_the_whole_file(tmp_path):
    rng = np.random.default_rng(1)
    stereo = rng.standard_normal((44100 * 3, 2)).astype(np.float32) * 0.1
    path = tmp_path / "x.wav"
    sf.write(str(path), stereo, 44100)
    source = AudioSource(path)
    stored, _ = sf.read(str(path), dtype="float32")  # 16-bit PCM: what the file holds
    whole = resample_poly(stored.mean(axis=1), 160, 441)
    assert source.samples == len(whole)
    for start, length in ((8000, 16000), (20000, 12000)):
        np.testing.assert_allclose(source.read(start, length), whole[start : start + length], atol=1e-5)


def test_segments_smoothing_and_minimum_duration():
    p = np.full((150, 3), 0.05)
    p[:60, 0] = p[60:63, 1] = p[63:140, 2] = p[140:, 1] = 0.9  # a 60 ms blip, and 200 ms at the end
    segments = frames_to_segments(p, ["a", "b", "c"], 50.0, 3.01, median=0.1, min_duration=0.25)
    assert [s.label for s in segments] == ["a", "c"] and segments[-1].end == 3.01
    assert segments[0].end == pytest.approx(segments[1].start)


def test_predict_cli_on_mixed_inputs(checkpoint, demo_folds, tmp_path):
    root, *rows = (demo_folds / "fold1" / "test.tsv").read_text().splitlines()
    wavs = [f"{root}/{r.split(chr(9))[0]}" for r in rows[:4]]
    x, sr = sf.read(wavs[0], dtype="float32")
    sf.write(str(tmp_path / "stereo8k.wav"), np.stack([resample_poly(x, 1, 2)] * 2, axis=1), 8000)
    sf.write(str(tmp_path / "music44k.ogg"), resample_poly(x, 441, 160).astype(np.float32), 44100, format="OGG")
    folder = tmp_path / "folder" / "nested"
    folder.mkdir(parents=True)
    shutil.copy(wavs[1], folder / "a.wav")
    manifest = tmp_path / "two.tsv"
    manifest.write_text("\n".join([root] + rows[2:4]) + "\n")
    out = tmp_path / "out"
    res = run_fesa(
        "predict",
        checkpoint,
        tmp_path / "stereo8k.wav",
        tmp_path / "music44k.ogg",
        tmp_path / "folder",
        manifest,
        "--out",
        out,
        "--frames",
        "--plot",
        "2",
        "--device",
        "cpu",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = (out / "utterances.tsv").read_text().splitlines()
    assert lines[0].split("\t") == ["utt_id", "path", "duration", "label", "p_neu", "p_hap", "p_ang", "p_sad"] and len(lines) == 6
    assert float(lines[1].split("\t")[2]) == pytest.approx(len(x) / 16000, abs=1e-3)
    assert all(abs(sum(map(float, line.split("\t")[4:])) - 1) < 1e-3 for line in lines[1:])
    assert res.stderr.count("resampled to 16000 Hz") == 2  # 8 kHz stereo and 44.1 kHz mono: each said once
    assert "5 files" in res.stdout and "s of audio per second" in res.stdout
    segments = read_segments_json(out / "segments.json")
    assert set(segments) == {"stereo8k", "music44k", "a", *(r.split("\t")[0].split("/")[-1][:-4] for r in rows[2:4])}
    frames = np.load(out / "frames" / "music44k.npz")
    assert frames["posteriors"].shape[1] == 4 and list(frames["labels"]) == ["neu", "hap", "ang", "sad"]
    assert sorted(p.name for p in (out / "timelines").glob("*.png")) == ["music44k.png", "stereo8k.png"]


def test_predict_skips_bad_files_and_writes_the_others(checkpoint, demo_folds, tmp_path, stock_hubert):
    root, first = (demo_folds / "fold1" / "test.tsv").read_text().splitlines()[:2]
    good = f"{root}/{first.split(chr(9))[0]}"
    (tmp_path / "text.wav").write_text("not audio")
    (tmp_path / "empty.wav").write_bytes(b"")
    sf.write(str(tmp_path / "short.wav"), np.zeros(300, dtype=np.float32), 16000)
    bad = {"text.wav": "cannot read", "empty.wav": "cannot read", "short.wav": "shorter than the encoder's receptive field"}
    out = tmp_path / "out"
    res = run_fesa("-q", "predict", checkpoint, good, *(tmp_path / n for n in bad), "--out", out, "--device", "cpu")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    for name, why in bad.items():
        assert any(str(tmp_path / name) in line and why in line for line in res.stderr.splitlines()), (name, res.stderr)
    assert len((out / "utterances.tsv").read_text().splitlines()) == 2
    res = run_fesa("-q", "predict", checkpoint, tmp_path / "short.wav", good, "--out", tmp_path / "strict", "--strict")
    assert res.returncode == 2 and not (tmp_path / "strict" / "utterances.tsv").exists()
    res = run_fesa("-q", "predict", checkpoint, tmp_path / "nowhere.wav", "--out", tmp_path / "o")
    assert res.returncode == 2 and "missing audio file" in res.stderr and str(tmp_path / "nowhere.wav") in res.stderr
    res = run_fesa("-q", "predict", stock_hubert, good, "--out", tmp_path / "o")
    assert res.returncode == 2 and "not a fine-tuned hubert_emotion_classifier" in res.stderr and str(stock_hubert) in res.stderr


def test_references_from_the_demo_corpus_a_tsv_and_zed(demo_folds, tmp_path):
    corpus = demo_folds.parent / "corpus"
    demo = convert_references(corpus)
    utt, entry = next(iter(demo.items()))
    assert entry["duration"] == pytest.approx(sf.info(entry["wav"]).duration, abs=1e-3)
    assert {e["emo"] for v in demo.values() for e in v["emotion"]} <= {"neu", "hap", "ang", "sad", "fru", "sur", "xxx"}
    plain = tmp_path / "plain.tsv"
    plain.write_text(f"{utt}\t0.1\t0.5\tang\n")
    manifest = demo_folds / "fold1" / "test.tsv"
    root, first = manifest.read_text().splitlines()[:2]
    plain.write_text(f"{first.split(chr(9))[0].split('/')[-1][:-4]} 0.1 0.5 ang\n")
    tsv = convert_references(plain, manifest=manifest)
    ((name, got),) = tsv.items()
    assert got["wav"].endswith(f"{name}.wav") and got["duration"] == pytest.approx(int(first.split("\t")[1]) / 16000, abs=1e-3)
    zed = tmp_path / "zed.json"
    zed.write_text(json.dumps({"z1": {"wav": "{data_root}/z1.wav", "duration": 2.0, "emotion": [{"emo": "angry", "start": 0.5, "end": 1.0}]}}))
    assert convert_references(zed, audio_root=tmp_path)["z1"]["wav"] == f"{tmp_path}/z1.wav"
    res = run_fesa("convert-segments", corpus, "--out", tmp_path / "ref.json")
    assert res.returncode == 0 and len(json.loads((tmp_path / "ref.json").read_text())) == len(demo)


def test_evaluate_measures_the_alignment_on_the_demo(checkpoint, demo_folds, tmp_path):
    reference = demo_folds.parent / "corpus" / DEMO_SEGMENTS_FILE
    res = run_fesa("-q", "evaluate", checkpoint, demo_folds / "fold1", "--reference", reference, "--out", tmp_path / "ev", "--device", "cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    frame = metrics["frame_level"]
    assert metrics["macro_f1"] == pytest.approx(macro_f1(metrics["confusion"]), abs=0.01) and "macro-F1" in res.stdout
    n = len((demo_folds / "fold1" / "test.emo").read_text().split())
    assert frame["utterances"] == n and 0 <= frame["eder"] <= 100 and frame["attention_focus"] > 0
    assert "frame level" in res.stdout and "EDER" in res.stdout
    rows = [line.split("\t") for line in (tmp_path / "ev" / "frame_level.tsv").read_text().splitlines()]
    assert rows[0] == ["utt_id", "eder", "attention_focus"] and len(rows) == n + 1
    assert np.mean([float(r[1]) for r in rows[1:]]) * 100 == pytest.approx(frame["eder"], abs=0.01)
    bad = run_fesa("-q", "evaluate", checkpoint, demo_folds / "fold1", "--reference", reference, "--neutral", "calm", "--out", tmp_path / "x")
    assert bad.returncode == 2 and "--neutral calm is not one of" in bad.stderr and not (tmp_path / "x" / "metrics.json").exists()


def test_evaluate_scores_each_utterance_as_predict_does(checkpoint, demo_folds, tmp_path):
    """HuBERT's group-normalised front end sees padding: batched, an utterance would score differently than alone."""
    recognizer = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu")
    res = run_fesa("-q", "evaluate", checkpoint, demo_folds / "fold1", "--out", tmp_path / "ev", "--device", "cpu", "--precision", "fp32")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "frame_level" not in json.loads((tmp_path / "ev" / "metrics.json").read_text())  # no --reference: no segment truth
    root, *rows = (demo_folds / "fold1" / "test.tsv").read_text().splitlines()
    paths = {Path(row.split("\t")[0]).stem: row.split("\t")[0] for row in rows}
    for line in (tmp_path / "ev" / "predictions.tsv").read_text().splitlines()[1:]:
        utt, _, _, *probs = line.split("\t")
        alone = recognizer.predict(f"{root}/{paths[utt]}").probabilities
        np.testing.assert_allclose(np.array(probs, dtype=float), alone, atol=2e-4)  # predictions.tsv keeps 4 decimals


def test_frame_figures_of_evaluate_against_a_case_computed_by_hand():
    """Two 2 s utterances, angry from 0.5 to 1.0 s. The first: segments right, 0.6 of the pooling weight on the 25
    angry frames (a quarter of the time): EDER 0, focus 0.6 / 0.25 = 2.4. The second: all neutral (EDER 0.5 s / 2 s
    = 25 %), weights uniform (focus 1.0). Means: EDER 12.5 %, focus 1.7."""
    from fesa.inference.recognizer import Prediction
    from fesa.pipeline.evaluate import frame_figures
    from fesa.segments import Segment

    inside = (np.arange(100) + 0.5) / 50.0
    inside = (inside >= 0.5) & (inside < 1.0)
    focused = np.where(inside, 0.6 / 25, 0.4 / 75)
    right = [Segment(0.0, 0.5, "neu"), Segment(0.5, 1.0, "ang"), Segment(1.0, 2.0, "neu")]

    def prediction(weights, segments):
        return Prediction(2.0, ["neu", "ang"], "ang", np.array([0.5, 0.5]), np.full((100, 2), 0.5), weights, segments, 50.0)

    truth = {"a": {"wav": "", "duration": 2.0, "emotion": [{"emo": "ang", "start": 0.5, "end": 1.0}]}}
    truth["b"] = truth["a"]
    predictions = [prediction(focused, right), prediction(np.full(100, 0.01), [Segment(0.0, 2.0, "neu")])]
    figures = frame_figures(predictions, ["/x/a.wav", "/x/b.wav"], truth, "neu")
    assert figures["eder"] == pytest.approx(12.5) and figures["attention_focus"] == pytest.approx(1.7)
    assert figures["utterances"] == 2 and figures["focus_utterances"] == 2
    assert figures["per_utterance"] == {"a": (0.0, pytest.approx(2.4)), "b": (0.25, pytest.approx(1.0))}
