"""Batched scoring (fesa predict, fesa evaluate): windows and utterances of different lengths in one encoder pass,
every result equal to scoring each alone, although the tiny models' front end group-normalises over time."""

import numpy as np
import pytest
import soundfile as sf
import torch

from fesa.devices import resolve_batch_seconds
from fesa.errors import FesaError
from fesa.inference.predict import collect_inputs, predict_files
from fesa.inference.recognizer import EmotionRecognizer
from fesa.pipeline.evaluate import load_scorer, score_split
from fesa_fairseq.data.audio import AudioSource
from fesa_fairseq.data.waveform import prepare_waveform
from fesa_fairseq.models.batching import length_batches

LENGTHS = (16000, 23456, 16000, 8001, 400, 50000, 399, 12000)  # 399: below the receptive field


@pytest.fixture(scope="module")
def checkpoint(finetuned_classifier):
    return finetuned_classifier / "checkpoints" / "checkpoint_best.pt"


def _waves(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in LENGTHS]


def _same(alone, batched):
    assert len(alone) == len(batched)
    for a, b in zip(alone, batched):
        if isinstance(a, FesaError):
            assert isinstance(b, FesaError) and str(a) == str(b)
            continue
        assert a.label == b.label
        assert a.frame_posteriors.shape == b.frame_posteriors.shape
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-4)
        np.testing.assert_allclose(a.frame_posteriors, b.frame_posteriors, atol=1e-4)
        np.testing.assert_allclose(a.pooling_weights, b.pooling_weights, atol=1e-4)
        assert [(s.start, s.end, s.label) for s in a.segments] == [(s.start, s.end, s.label) for s in b.segments]


def test_length_batches_sort_longest_first_within_the_budget():
    assert length_batches([5, 9, 3, 9, 1], 0) == [[0], [1], [2], [3], [4]]
    assert length_batches([5, 9, 3, 9, 1], 18) == [[1, 3], [0, 2, 4]]
    assert length_batches([50, 3], 10) == [[0], [1]]  # an item longer than the budget goes alone


def test_batch_seconds_default_per_device():
    assert resolve_batch_seconds(None, torch.device("cpu")) == 0.0
    assert resolve_batch_seconds(None, torch.device("cuda")) > 0
    assert resolve_batch_seconds(2.5, torch.device("cpu")) == 2.5
    with pytest.raises(FesaError, match="--batch-seconds"):
        resolve_batch_seconds(-1, torch.device("cpu"))


def test_padded_batch_gives_every_frame_its_own_utterance(checkpoint):
    """The plain padded batch is wrong here (group norm over the padding); the batched path is not."""
    model = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu").model
    waves = [prepare_waveform(torch.from_numpy(w), False) for w in _waves()[:4]]
    with torch.no_grad():
        alone = [model.frame_outputs(w[None]) for w in waves]
        batched = model.frame_outputs_batched(waves)
        longest = max(w.numel() for w in waves)
        padded = torch.stack([torch.nn.functional.pad(w, (0, longest - w.numel())) for w in waves])
        naive = model.frame_outputs(padded, torch.arange(longest)[None] >= torch.tensor([w.numel() for w in waves])[:, None])
    for i, a in enumerate(alone):
        n = a["frames"].shape[1]
        assert int((~batched["padding_mask"][i]).sum()) == n
        for key in ("frames", "frame_logits", "log_weights"):
            torch.testing.assert_close(batched[key][i, :n], a[key][0], atol=1e-4, rtol=0)
    shortest = min(range(4), key=lambda i: waves[i].numel())
    n = alone[shortest]["frames"].shape[1]
    assert (naive["frames"][shortest, :n] - alone[shortest]["frames"][0]).abs().max() > 1e-3


def test_windows_and_recordings_batched_equal_one_at_a_time(checkpoint):
    """Short windows: long waveforms give several equal windows and a shorter last one, mixed in batches with other
    recordings; one too short for the encoder is reported in its place."""
    options = dict(device="cpu", window=1.0, hop=0.75)
    alone = EmotionRecognizer.from_checkpoint(checkpoint, batch_seconds=0, **options)
    batched = EmotionRecognizer.from_checkpoint(checkpoint, batch_seconds=3.0, **options)

    def sources():
        return [AudioSource(array=w, sample_rate=16000, rate=16000) for w in _waves()]

    a, b = list(alone.predict_many(sources())), list(batched.predict_many(sources()))
    assert [isinstance(x, FesaError) for x in b] == [n < 400 for n in LENGTHS]
    _same(a, b)


def test_predict_files_batched_writes_what_one_at_a_time_writes(checkpoint, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i, w in enumerate(_waves(1)):
        sf.write(audio / f"u{i}.wav", w, 16000)
    (audio / "broken.wav").write_bytes(b"not audio")
    inputs = collect_inputs([str(audio)])
    for seconds in (0, 2.0):
        rec = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu", batch_seconds=seconds)
        s = predict_files(rec, inputs, tmp_path / f"out{seconds}", frames=True, progress=False)
        assert len(s["skipped"]) == 2 and s["files"] == len(LENGTHS) - 1
    assert (tmp_path / "out0" / "utterances.tsv").read_text() == (tmp_path / "out2.0" / "utterances.tsv").read_text()
    assert (tmp_path / "out0" / "segments.json").read_text() == (tmp_path / "out2.0" / "segments.json").read_text()
    for npz in (tmp_path / "out0" / "frames").glob("*.npz"):
        one, many = np.load(npz), np.load(tmp_path / "out2.0" / "frames" / npz.name)
        np.testing.assert_allclose(one["posteriors"], many["posteriors"], atol=1e-4)
        np.testing.assert_allclose(one["pooling_weights"], many["pooling_weights"], atol=1e-4)


def test_evaluate_batched_equals_one_at_a_time(checkpoint, demo_folds):
    fold = demo_folds / "fold1"
    results = []
    for seconds in (0, 4.0):
        recognizer, task = load_scorer(str(checkpoint), str(fold), torch.device("cpu"), None, batch_seconds=seconds)
        results.append(score_split(recognizer, task, "test", progress=False))
    one, many = results
    assert list(one["paths"]) == list(many["paths"])
    np.testing.assert_allclose(one["prob"], many["prob"], atol=1e-4)
    assert one["prediction"].tolist() == many["prediction"].tolist()
    _same(one["frames"], many["frames"])


def test_pseudo_label_features_batched_equal_one_at_a_time(stock_hubert, demo_folds, tmp_path):
    """fesa pseudo-labels' feature dump in length-sorted batches: the same features (1e-4) and the same .km files."""
    from fesa.labels.pseudo_labels import PseudoLabelJob, make_pseudo_labels
    from fesa.labels.readers import HubertFeatureReader

    fold = demo_folds / "fold1"
    reader = HubertFeatureReader(str(stock_hubert), 1, torch.device("cpu"), precision="fp32")
    outs = {}
    for samples in (0, 2 * 16000):
        out = tmp_path / f"b{samples}"
        job = PseudoLabelJob(str(fold), ["train", "valid"], str(out), clusters=8, feature_dir=str(out / "feats"), batch_samples=samples)
        make_pseudo_labels(reader, job)
        outs[samples] = out
    one, many = outs.values()
    for split in ("train", "valid"):
        assert (one / f"{split}.km").read_text() == (many / f"{split}.km").read_text()
        assert (one / "feats" / f"{split}_0_1.len").read_text() == (many / "feats" / f"{split}_0_1.len").read_text()
        np.testing.assert_allclose(np.load(one / "feats" / f"{split}_0_1.npy"), np.load(many / "feats" / f"{split}_0_1.npy"), atol=1e-4)
