"""fesa import-hf and fesa export --hf: tiny random transformers models built here (no hub), against fairseq."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fesa.inference.recognizer import EmotionRecognizer
from fesa_fairseq.checkpoints import inspect_checkpoint, require_pretrained_hubert

from tiny_hubert import finetune, run_fesa

transformers = pytest.importorskip("transformers", reason="the [hf] extra (make install brings it)")
safetensors_torch = pytest.importorskip("safetensors.torch", reason="the [hf] extra (make install brings it)")

# 50 frames a second like HuBERT (hop 320, receptive field 400); the last conv_dim differs from hidden_size, as in
# every released model, so that fairseq has the feature projection transformers always has.
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(24,) * 7,
    conv_stride=(5, 2, 2, 2, 2, 2, 2),
    conv_kernel=(10, 3, 3, 3, 3, 2, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
KINDS = {
    "HubertModel": ("HubertConfig", "HubertModel", {}),
    "HubertForCTC (layer-normed, pre-LN)": (
        "HubertConfig",
        "HubertForCTC",
        dict(feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True),
    ),
    "Wav2Vec2Model": ("Wav2Vec2Config", "Wav2Vec2Model", {}),
}


def tiny_model(kind: str, seed: int = 0):
    config_class, model_class, extra = KINDS[kind]
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(**TINY, **extra)
    return getattr(transformers, model_class)(config).eval()


def snapshot(model, folder: Path) -> Path:
    model.save_pretrained(str(folder))
    return folder


def encoder_of(model):
    return getattr(model, model.base_model_prefix, model)


def import_hf(folder: Path, out: Path):
    res = run_fesa("import-hf", folder, "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def fairseq_layers(checkpoint: Path, x: torch.Tensor):
    """Stock fairseq's loader (no plugin code), then every layer's output and the final one."""
    from fairseq import checkpoint_utils

    (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(checkpoint)])
    model.eval()
    with torch.no_grad():
        layers = [model.extract_features(x, output_layer=i)[0] for i in range(1, len(model.encoder.layers) + 1)]
        return layers + [model.extract_features(x)[0]]


@pytest.mark.parametrize("kind", list(KINDS))
def test_imported_layers_equal_transformers(kind, tmp_path):
    model = tiny_model(kind)
    res = import_hf(snapshot(model, tmp_path / "snap"), tmp_path / "out.pt")
    x = 0.1 * torch.randn(1, 21_937, generator=torch.Generator().manual_seed(5))  # not the command's own check input
    if kind.startswith("HubertForCTC"):
        x = torch.nn.functional.layer_norm(x, x.shape)
        assert "lm_head.weight" in res.stdout  # left out, and said so
    with torch.no_grad():
        theirs = encoder_of(model)(x, output_hidden_states=True)
    ours = fairseq_layers(tmp_path / "out.pt", x)
    for i, (a, b) in enumerate(zip(ours, list(theirs.hidden_states[1:]) + [theirs.last_hidden_state])):
        assert a.shape == b.shape
        assert float((a - b).abs().max()) < 1e-4, f"layer {i + 1}"
    info = inspect_checkpoint(str(tmp_path / "out.pt"))
    assert (info.model, info.task, info.encoder_layers) == ("hubert", "hubert_pretraining", 2)


def _legacy_names(weights):
    """The weight-norm spelling of torch < 2.1 (and of snapshots saved with it)."""
    rename = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    out = {}
    for name, tensor in weights.items():
        for new, old in rename.items():
            name = name.replace(new, old)
        out[name] = tensor
    return out


def test_both_weight_norm_spellings_and_a_pytorch_bin_give_the_same_checkpoint(tmp_path):
    model = tiny_model("HubertModel")
    new = snapshot(model, tmp_path / "new")
    weights = safetensors_torch.load_file(str(new / "model.safetensors"))
    assert any("parametrizations.weight.original0" in k for k in weights)
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text((new / "config.json").read_text())
    safetensors_torch.save_file(_legacy_names(weights), str(legacy / "model.safetensors"), metadata={"format": "pt"})
    binary = tmp_path / "bin"
    binary.mkdir()
    (binary / "config.json").write_text((new / "config.json").read_text())
    torch.save(_legacy_names(weights), binary / "pytorch_model.bin")
    states = []
    for folder in (new, legacy, binary):
        import_hf(folder, tmp_path / f"{folder.name}.pt")  # beside the snapshot: never inside it
        states.append(torch.load(tmp_path / f"{folder.name}.pt", weights_only=True)["model"])
    encoder = [k for k in states[0] if k not in ("label_embs_concat", "final_proj.weight", "final_proj.bias")]
    assert "encoder.pos_conv.0.weight_g" in encoder
    for other in states[1:]:
        assert all(torch.equal(states[0][k], other[k]) for k in encoder)


class RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pytorch_bin_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "snap"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(tiny_model("HubertModel").config.to_dict()))
    torch.save({"feature_projection.projection.weight": RunsCode(tmp_path / "ran")}, folder / "pytorch_model.bin")
    res = run_fesa("import-hf", folder, "--out", tmp_path / "out.pt")
    assert res.returncode == 2
    assert "pytorch_model.bin as plain tensors" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize(
    "change,field",
    [
        ({"conv_pos_batch_norm": True}, "conv_pos_batch_norm"),
        ({"feat_extract_activation": "relu"}, "feat_extract_activation"),
        ({"feat_extract_norm": "batch"}, "feat_extract_norm"),
        ({"layer_norm_eps": 1e-12}, "layer_norm_eps"),
        ({"model_type": "wavlm", "num_buckets": 320, "max_bucket_distance": 800}, "num_buckets"),
        ({"model_type": "data2vec-audio"}, "model_type"),
    ],
)
def test_configurations_fairseq_cannot_hold_are_refused_by_name(change, field, tmp_path):
    folder = snapshot(tiny_model("HubertModel"), tmp_path / "snap")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    res = run_fesa("import-hf", folder, "--out", tmp_path / "out.pt")
    assert res.returncode == 2, res.stderr
    assert f"{field}=" in res.stderr and "nothing was written" in res.stderr
    assert not (tmp_path / "out.pt").exists()


def test_an_existing_checkpoint_is_kept_without_overwrite(tmp_path):
    folder = snapshot(tiny_model("HubertModel"), tmp_path / "snap")
    (tmp_path / "out.pt").write_bytes(b"mine")
    res = run_fesa("import-hf", folder, "--out", tmp_path / "out.pt")
    assert res.returncode == 2 and "--overwrite" in res.stderr
    assert (tmp_path / "out.pt").read_bytes() == b"mine"
    assert run_fesa("import-hf", folder, "--out", tmp_path / "out.pt", "--overwrite").returncode == 0
    assert inspect_checkpoint(str(tmp_path / "out.pt")).model == "hubert"


def architecture_overrides(config) -> list:
    layers = ", ".join(f"({d},{k},{s})" for d, k, s in zip(config.conv_dim, config.conv_kernel, config.conv_stride))
    return [
        f"model.conv_feature_layers='[{layers}]'",
        f"model.encoder_layers={config.num_hidden_layers}",
        f"model.encoder_embed_dim={config.hidden_size}",
        f"model.encoder_ffn_embed_dim={config.intermediate_size}",
        f"model.encoder_attention_heads={config.num_attention_heads}",
        f"model.conv_pos={config.num_conv_pos_embeddings}",
        f"model.conv_pos_groups={config.num_conv_pos_embedding_groups}",
    ]


def test_imported_checkpoint_feeds_pseudo_labels_and_a_tapt_warm_start(stock_labels, demo_folds, tmp_path):
    from tiny_hubert import hydra_train

    model = tiny_model("HubertModel")
    ckpt = tmp_path / "imported.pt"
    import_hf(snapshot(model, tmp_path / "snap"), ckpt)
    assert require_pretrained_hubert(str(ckpt), "source_checkpoint").encoder_layers == 2  # the depth check's figure
    res = run_fesa(
        "-q", "pseudo-labels", "--manifest-dir", demo_folds / "fold1", "--splits", "train", "--checkpoint", ckpt,
        "--layer", "2", "--clusters", "4", "--out", tmp_path / "km", "--device", "cpu",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    rows = (demo_folds / "fold1" / "train.tsv").read_text().splitlines()[1:]
    labels = (tmp_path / "km" / "train.km").read_text().splitlines()
    assert len(labels) == len(rows)
    assert [len(line.split()) for line in labels] == [(int(r.split("\t")[1]) - 400) // 320 + 1 for r in rows]
    run = tmp_path / "tapt"
    overrides = [f"task.data={demo_folds / 'fold1'}", f"task.label_dir={stock_labels}", f"model.init_checkpoint={ckpt}", "optimization.max_update=2"]
    res = hydra_train("tapt", "tiny", run, *overrides, *architecture_overrides(model.config))
    assert res.returncode == 0, res.stderr[-4000:]
    log = (run / "hydra_train.log").read_text()
    assert f"init_checkpoint {ckpt}: loaded" in log
    assert "label embeddings reset (auto: label dictionary 0: other symbols or order" in log  # as for a release with other labels


@pytest.fixture(scope="module")
def mean_classifier(stock_hubert, demo_folds, tmp_path_factory):
    run = tmp_path_factory.mktemp("mean")
    res = finetune(demo_folds / "fold1", stock_hubert, run, "model.pooling=mean", "optimization.max_update=4", "dataset.max_tokens=480000")
    assert res.returncode == 0, res.stderr[-4000:]
    return run / "checkpoints" / "checkpoint_best.pt"


def test_stock_tiny_classifier_has_no_feature_projection(mean_classifier):
    """The export's identity projection is exercised: the tiny model's conv and encoder widths agree (64)."""
    recognizer = EmotionRecognizer.from_checkpoint(mean_classifier, device="cpu")
    assert recognizer.model.encoder.w2v_model.post_extract_proj is None


def demo_test_audio(demo_folds, n: int):
    rows = (demo_folds / "fold1" / "test.tsv").read_text().splitlines()
    root = Path(rows[0])
    return [sf.read(str(root / r.split("\t")[0]), dtype="float32")[0] for r in rows[1 : n + 1]]


def test_mean_pooling_becomes_a_plain_hubert_for_sequence_classification(mean_classifier, demo_folds, tmp_path):
    out = tmp_path / "hf"
    res = run_fesa("export", mean_classifier, "--hf", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "HubertForSequenceClassification" in res.stdout and not (out / "modeling_fesa.py").exists()
    hf = transformers.AutoModelForAudioClassification.from_pretrained(str(out)).eval()  # no code of ours
    assert type(hf).__name__ == "HubertForSequenceClassification"
    recognizer = EmotionRecognizer.from_checkpoint(mean_classifier, device="cpu")
    assert list(hf.config.id2label.values()) == recognizer.labels
    for seconds in (0.7, 2.31):
        x = 0.1 * torch.randn(1, int(16000 * seconds), generator=torch.Generator().manual_seed(int(seconds * 10)))
        with torch.no_grad():
            expected = recognizer.model(x, None)["logits"]
            assert float((hf(x).logits - expected).abs().max()) < 1e-4
    classify = transformers.pipeline("audio-classification", model=str(out))
    for audio in demo_test_audio(demo_folds, 3):
        assert classify({"raw": audio, "sampling_rate": 16000})[0]["label"] == recognizer.predict(audio, 16000).label


def test_attention_pooling_exports_remote_code_with_the_frame_outputs(finetuned_classifier, demo_folds, tmp_path):
    checkpoint = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    out = tmp_path / "hf"
    res = run_fesa("export", checkpoint, "--hf", out)
    assert res.returncode == 0, res.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert config["fesa_pooling"] == "attention" and "AutoModelForAudioClassification" in config["auto_map"]
    hf = transformers.AutoModelForAudioClassification.from_pretrained(str(out), trust_remote_code=True).eval()
    recognizer = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu")
    for audio in demo_test_audio(demo_folds, 2):
        prediction = recognizer.predict(audio, 16000)
        with torch.no_grad():
            got = hf(torch.from_numpy(audio)[None])
        np.testing.assert_allclose(torch.softmax(got.logits, -1)[0].numpy(), prediction.probabilities, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.frame_posteriors[0].numpy(), prediction.frame_posteriors, atol=1e-4, rtol=0)
        np.testing.assert_allclose(got.pooling_weights[0].numpy(), prediction.pooling_weights, atol=1e-5, rtol=0)
        assert hf.config.id2label[int(got.logits.argmax())] == prediction.label


def test_model_card_holds_the_fold_scores_with_the_reference_first(finetuned_classifier, demo_folds, tmp_path):
    fold = tmp_path / "exp" / "fold1"
    checkpoint = fold / "finetune" / "m" / "checkpoints" / "checkpoint_best.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes((finetuned_classifier / "checkpoints" / "checkpoint_best.pt").read_bytes())
    data = demo_folds / "fold1"
    assert run_fesa("-q", "evaluate", checkpoint, data, "--split", "test", "--out", fold / "evaluate" / "m", "--device", "cpu").returncode == 0
    assert run_fesa("-q", "acoustic-baseline", data, "--split", "test", "--out", fold / "evaluate" / "reference").returncode == 0
    res = run_fesa("export", checkpoint, "--hf", tmp_path / "hf")
    assert res.returncode == 0, res.stderr[-3000:]
    card = (tmp_path / "hf" / "README.md").read_text()
    scored = json.loads((fold / "evaluate" / "m" / "metrics.json").read_text())
    reference = json.loads((fold / "evaluate" / "reference" / "metrics.json").read_text())
    rows = [line for line in card.splitlines() if line.startswith("| ")][1:]
    assert rows[0].startswith("| acoustic reference") and f"| {reference['ua']} | {reference['wa']} |" in rows[0]
    assert rows[1].startswith("| this model") and f"| {scored['ua']} | {scored['wa']} | {scored['macro_f1']} |" in rows[1]
    assert ", ".join(scored["labels"]) in card and "fold1" in card and "frame_posteriors" in card


def test_export_never_replaces_a_folder_it_did_not_write(mean_classifier, tmp_path):
    mine = tmp_path / "hf"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    res = run_fesa("export", mean_classifier, "--hf", mine, "--overwrite")
    assert res.returncode == 2 and "not written by this command" in res.stderr
    assert (mine / "notes.txt").read_text() == "mine"
    fresh = tmp_path / "fresh"
    assert run_fesa("export", mean_classifier, "--hf", fresh).returncode == 0
    again = run_fesa("export", mean_classifier, "--hf", fresh)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert run_fesa("export", mean_classifier, "--hf", fresh, "--overwrite").returncode == 0
    assert sorted(p.name for p in fresh.iterdir()) == sorted(
        ["README.md", "config.json", "fesa_export.json", "model.safetensors", "preprocessor_config.json"]
    )


def test_the_plugin_imports_transformers_only_in_these_commands():
    script = (
        "import sys, fesa_fairseq\n"
        "import fesa.huggingface.import_hf, fesa.huggingface.export_hf\n"
        "print(sorted(m for m in ('transformers', 'safetensors') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_a_feature_projection_fairseq_cannot_hold_is_refused(tmp_path):
    """Conv and encoder widths equal: fairseq has no projection, so only an identity one can be imported."""
    torch.manual_seed(0)
    config = transformers.HubertConfig(**{**TINY, "conv_dim": (32,) * 7})
    folder = snapshot(transformers.HubertModel(config).eval(), tmp_path / "snap")
    res = run_fesa("import-hf", folder, "--out", tmp_path / "out.pt")
    assert res.returncode == 2 and "hidden_size=32" in res.stderr and "nothing was written" in res.stderr
    assert not (tmp_path / "out.pt").exists()


def test_an_exported_classifier_imports_back_to_its_own_encoder(finetuned_classifier, tmp_path):
    """export --hf then import-hf: the classifier's encoder comes back tensor for tensor (its identity projection
    dropped again, its head left out and named)."""
    checkpoint = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    assert run_fesa("export", checkpoint, "--hf", tmp_path / "hf").returncode == 0
    res = import_hf(tmp_path / "hf", tmp_path / "back.pt")
    assert "pooling.score.weight" in res.stdout
    back = torch.load(tmp_path / "back.pt", weights_only=True)["model"]
    encoder = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu").model.encoder.w2v_model.state_dict()
    shared = [k for k in encoder if k not in ("label_embs_concat", "final_proj.weight", "final_proj.bias")]
    assert shared and all(torch.equal(encoder[k], back[k]) for k in shared)


def test_a_damaged_safetensors_file_is_named(tmp_path):
    folder = snapshot(tiny_model("HubertModel"), tmp_path / "snap")
    (folder / "model.safetensors").write_bytes(b"not tensors")
    res = run_fesa("import-hf", folder, "--out", tmp_path / "out.pt")
    assert res.returncode == 2 and f"cannot read {folder / 'model.safetensors'}" in res.stderr and "Traceback" not in res.stderr


def test_without_the_hf_extra_both_commands_say_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # what an environment without the [hf] extra gives
    (tmp_path / "snap").mkdir()
    for args in (("import-hf", tmp_path / "snap", "--out", tmp_path / "o.pt"), ("export", tmp_path / "c.pt", "--hf", tmp_path / "hf")):
        res = run_fesa(*args)
        assert res.returncode == 2 and "needs the [hf] extra (transformers is missing)" in res.stderr, res.stderr
