"""fesa pseudo-labels for real: fairseq's simple_kmeans on frame features of tiny HuBERTs and on MFCCs."""

import json

import joblib
import numpy as np
import pytest
import soundfile as sf
import torch

from fesa.labels.readers import MfccFeatureReader, compute_deltas
from fesa_fairseq.data.files import read_manifest

from tiny_hubert import frames, run_fesa


def km_lines(out, split):
    return [line.split() for line in (out / f"{split}.km").read_text().splitlines()]


def assert_lines_fit(fold, out, frames_of, splits=("train", "valid", "test")):
    for split in splits:
        _, rows = read_manifest(fold / f"{split}.tsv")
        lines = km_lines(out, split)
        assert len(lines) == len(rows)
        assert [len(line) for line in lines] == [frames_of(n) for _, n in rows]


def test_every_line_has_the_models_frame_count(stock_labels, demo_folds):
    assert_lines_fit(demo_folds / "fold1", stock_labels, frames)
    km = joblib.load(stock_labels / "kmeans.bin")
    assert km.cluster_centers_.shape == (8, 64)
    labels = {int(x) for line in km_lines(stock_labels, "train") for x in line}
    assert labels <= set(range(8)) and len(labels) >= 4
    counts = [line.split() for line in (stock_labels / "dict.km.txt").read_text().splitlines()]
    assert [c[0] for c in counts] == [str(k) for k in range(8)]
    assert sum(int(c[1]) for c in counts) == sum(map(len, km_lines(stock_labels, "train")))
    info = json.loads((stock_labels / "labels.json").read_text())
    assert (info["layer"], info["clusters"], info["label_rate"], info["kmeans_fitted_on"]) == (1, 8, 50.0, "train")
    assert not (stock_labels / ".features").exists()  # temporary features are removed


def test_kmeans_never_sees_other_splits(stock_hubert, demo_folds, tmp_path):
    """Labelling the test split too leaves the k-means model byte for byte the same."""
    outs = {}
    for splits in ("train", "train,valid,test"):
        outs[splits] = tmp_path / splits.replace(",", "_")
        res = run_fesa(
            "-q",
            "pseudo-labels",
            "--manifest-dir",
            demo_folds / "fold1",
            "--splits",
            splits,
            "--checkpoint",
            stock_hubert,
            "--layer",
            "2",
            "--clusters",
            "5",
            "--out",
            outs[splits],
            "--kmeans-n-init",
            "3",
        )
        assert res.returncode == 0, res.stderr[-3000:]
    a, b = (joblib.load(o / "kmeans.bin").cluster_centers_ for o in outs.values())
    np.testing.assert_array_equal(a, b)
    assert km_lines(outs["train"], "train") == km_lines(outs["train,valid,test"], "train")


def test_features_of_a_finetuned_classifier(finetuned_classifier, demo_folds, tmp_path):
    """Phase 1 of the method: cluster a layer of the fine-tuned model."""
    ckpt = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    out = tmp_path / "emotion_labels"
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        demo_folds / "fold1",
        "--checkpoint",
        ckpt,
        "--layer",
        "2",
        "--clusters",
        "6",
        "--out",
        out,
        "--percent",
        "0.5",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert_lines_fit(demo_folds / "fold1", out, frames)


def test_apply_an_existing_kmeans_model(stock_labels, stock_hubert, demo_folds, tmp_path):
    out = tmp_path / "applied"
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        demo_folds / "fold1",
        "--splits",
        "valid,test",
        "--checkpoint",
        stock_hubert,
        "--layer",
        "1",
        "--kmeans-model",
        stock_labels / "kmeans.bin",
        "--out",
        out,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert km_lines(out, "valid") == km_lines(stock_labels, "valid")
    assert json.loads((out / "labels.json").read_text())["kmeans_fitted_on"] is None


def _labels_with_features(stock_hubert, demo_folds, out, feats, *args):
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        demo_folds / "fold1",
        "--splits",
        "train",
        "--checkpoint",
        stock_hubert,
        "--layer",
        "1",
        "--clusters",
        "6",
        "--out",
        out,
        "--feature-dir",
        feats,
        *args,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return np.load(feats / "train_0_1.npy")


def test_faiss_kmeans_goes_through_fairseqs_dump_km_label(stock_hubert, demo_folds, tmp_path):
    """The faiss backend's kmeans.bin is what fairseq's recipe saves: its ApplyKmeans gives our labels."""
    from fairseq.examples.hubert.simple_kmeans.dump_km_label import ApplyKmeans

    out = tmp_path / "faiss"
    feats = _labels_with_features(stock_hubert, demo_folds, out, tmp_path / "feats", "--kmeans-backend", "faiss")
    ours = [[int(x) for x in line] for line in km_lines(out, "train")]
    # Utterance by utterance, as dump_label applies it: one matmul over all frames rounds differently, and a frame
    # whose two nearest centroids tie to float32 precision may then flip (seen once in 4,815).
    cuts = np.cumsum([0] + [int(n) for n in (tmp_path / "feats" / "train_0_1.len").read_text().split()])
    apply = ApplyKmeans(str(out / "kmeans.bin"))
    assert [apply(feats[a:b]).tolist() for a, b in zip(cuts[:-1], cuts[1:])] == ours
    info = json.loads((out / "labels.json").read_text())["kmeans"]
    assert (info["backend"], info["max_iter"], info["n_init"]) == ("faiss", 25, 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_faiss_kmeans_finds_every_separated_cluster(seed):
    """k-means++ alone leaves some of 100 well-separated clusters with two seeds and others with none (checked: 1 to
    4 of them for these seeds); the swaps give every cluster exactly one centroid."""
    from fesa.labels.kmeans_backends import assign, fit_kmeans_model

    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(100), 100)
    x = (rng.standard_normal((100, 64)) * 3)[truth] + rng.standard_normal((len(truth), 64))
    found = assign(fit_kmeans_model(x.astype(np.float32), 100, "faiss", seed), x)
    assert len(set(zip(truth, found))) == 100 and len(np.unique(found)) == 100


def test_sklearn_backend_is_fairseqs_recipe(stock_hubert, demo_folds, tmp_path):
    from fairseq.examples.hubert.simple_kmeans.learn_kmeans import learn_kmeans

    out = tmp_path / "sklearn"
    _labels_with_features(stock_hubert, demo_folds, out, tmp_path / "feats", "--kmeans-backend", "sklearn", "--kmeans-n-init", "3")
    learn_kmeans(str(tmp_path / "feats"), "train", 1, str(tmp_path / "fairseq.bin"), 6, 0, -1, "k-means++", 100, 10000, 0.0, 3, 0.0, 100)
    np.testing.assert_array_equal(joblib.load(out / "kmeans.bin").cluster_centers_, joblib.load(tmp_path / "fairseq.bin").cluster_centers_)


def test_mfcc_bootstrap_labels_at_100_hz(demo_folds, tmp_path):
    out = tmp_path / "mfcc"
    res = run_fesa("-q", "pseudo-labels", "--manifest-dir", demo_folds / "fold1", "--features", "mfcc", "--clusters", "10", "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert_lines_fit(demo_folds / "fold1", out, lambda n: 1 + (n - 400) // 160)
    assert json.loads((out / "labels.json").read_text())["label_rate"] == 100.0


def test_mfcc_features(demo_folds):
    root, rows = read_manifest(demo_folds / "fold1" / "test.tsv")
    reader = MfccFeatureReader()
    feats = reader.get_feats(f"{root}/{rows[0][0]}", rows[0][1])
    assert feats.shape == (1 + (rows[0][1] - 400) // 160, 39) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all()
    # deltas: the regression slope, with edges replicated (torchaudio.functional.compute_deltas semantics)
    ramp = np.arange(10, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], dtype=np.float32)
    d = compute_deltas(ramp)
    np.testing.assert_allclose(d[2:-2], np.tile([[1.0, -2.0]], (6, 1)), rtol=1e-6)
    np.testing.assert_allclose(d[0], [0.5, -1.0], rtol=1e-6)  # (1*(x1-x0) + 2*(x2-x0)) / 10 at the edge
    silent = reader.mfcc(np.zeros(16000, dtype=np.float32))
    assert silent.shape == (98, 13)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layer", "3", "--clusters", "4"], "--layer is 3; layers are counted from 1, give 1..2: {ckpt} has 2 transformer layers"),
        (["--layer", "1", "--clusters", "100000"], "--clusters 100000 is more than the"),
        (["--layer", "1", "--clusters", "4", "--splits", "valid,test"], "k-means is learned on the 'train' split only"),
        (["--layer", "1", "--clusters", "4", "--splits", "train,dev"], "missing manifest"),
    ],
)
def test_bad_requests_are_refused(stock_hubert, demo_folds, tmp_path, args, message):
    res = run_fesa("-q", "pseudo-labels", "--manifest-dir", demo_folds / "fold1", "--checkpoint", stock_hubert, "--out", tmp_path / "out", *args)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1].startswith("fesa pseudo-labels: error:")
    assert message.format(ckpt=stock_hubert) in res.stderr
    assert not (tmp_path / "out" / "labels.json").exists()


def test_checkpoint_of_another_family_is_refused(stock_hubert, demo_folds, tmp_path):
    state = torch.load(stock_hubert, weights_only=False)
    state["cfg"]["model"]["_name"] = "wav2vec2"
    state["cfg"]["task"]["_name"] = "audio_pretraining"
    other = tmp_path / "wav2vec2.pt"
    torch.save(state, other)
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        demo_folds / "fold1",
        "--checkpoint",
        other,
        "--layer",
        "1",
        "--clusters",
        "4",
        "--out",
        tmp_path / "out",
    )
    assert res.returncode == 2
    assert f"{other} holds a 'wav2vec2' model (task 'audio_pretraining'); a HuBERT is needed" in res.stderr


def test_audio_that_disagrees_with_the_manifest(stock_hubert, demo_folds, tmp_path):
    import shutil

    fold = shutil.copytree(demo_folds / "fold1", tmp_path / "fold1")
    root, rows = read_manifest(fold / "valid.tsv")
    for rel, _ in rows:  # the valid split's audio, under a new root, one file cut short
        (tmp_path / "audio" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f"{root}/{rel}", tmp_path / "audio" / rel)
    short = tmp_path / "audio" / rows[1][0]
    sf.write(str(short), np.zeros(rows[1][1] - 320, dtype=np.float32), 16000)
    lines = (fold / "valid.tsv").read_text().splitlines()
    (fold / "valid.tsv").write_text("\n".join([str(tmp_path / "audio")] + lines[1:]) + "\n")
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        fold,
        "--splits",
        "train,valid",
        "--checkpoint",
        stock_hubert,
        "--layer",
        "1",
        "--clusters",
        "4",
        "--out",
        tmp_path / "out",
    )
    assert res.returncode == 2
    assert f"{short} has {rows[1][1] - 320} samples but the manifest says {rows[1][1]}" in res.stderr


def test_layer_hooks_equal_extract_features(stock_hubert, demo_folds):
    from fesa.labels.readers import HubertFeatureReader

    root, rows = read_manifest(demo_folds / "fold1" / "valid.tsv")
    path = f"{root}/{rows[0][0]}"
    both = HubertFeatureReader(str(stock_hubert), 2, torch.device("cpu"), precision="fp32").get_layer_feats(path, [1, 2], rows[0][1])
    for layer in (1, 2):
        alone = HubertFeatureReader(str(stock_hubert), layer, torch.device("cpu"), precision="fp32").get_feats(path, rows[0][1])
        torch.testing.assert_close(both[layer], alone)
        assert len(alone) == frames(rows[0][1])


def test_analyze_clusters_grid(finetuned_classifier, demo_folds, tmp_path):
    from fesa.labels.analyze_clusters import purity

    assert purity(np.array([0, 0, 0, 1, 1]), np.array([2, 2, 1, 0, 0])) == pytest.approx(4 / 5)
    ckpt = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    res = run_fesa(
        "-q",
        "analyze-clusters",
        "--manifest-dir",
        demo_folds / "fold1",
        "--checkpoint",
        ckpt,
        "--layers",
        "1,2",
        "--clusters",
        "3,5",
        "--out",
        tmp_path / "a",
        "--max-utterances",
        "30",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads((tmp_path / "a" / "analysis.json").read_text())
    assert [(c["layer"], c["clusters"]) for c in result["cells"]] == [(1, 3), (1, 5), (2, 3), (2, 5)]
    for cell in result["cells"]:
        assert result["majority_share"] - 1e-9 <= cell["purity"] <= 1 and 0 <= cell["nmi"] <= 1
    assert "| 2 | " in res.stdout and (tmp_path / "a" / "clusters.png").stat().st_size > 2000
    res = run_fesa(
        "-q",
        "analyze-clusters",
        "--manifest-dir",
        demo_folds / "fold1",
        "--checkpoint",
        ckpt,
        "--layers",
        "1,7",
        "--clusters",
        "3",
        "--out",
        tmp_path / "b",
    )
    assert res.returncode == 2 and "give 1..2: " in res.stderr and "has 2 transformer layers" in res.stderr
