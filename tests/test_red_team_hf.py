"""Red-team pass 3 on the Hugging Face bridge: import-hf and export never write over their input, and a damaged
snapshot (NaN weights, a shard path outside it, a mistyped config, a pickle of the wrong thing, duplicate JSON keys)
is one line naming the file and the field, with nothing written."""

import json
from pathlib import Path

import pytest
import torch
from test_huggingface import TINY, tiny_model

from cli_helpers import fesa_main, one_line_error, snapshot

transformers = pytest.importorskip("transformers", reason="the [hf] extra (make install brings it)")
safetensors_torch = pytest.importorskip("safetensors.torch", reason="the [hf] extra (make install brings it)")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A tiny HubertModel snapshot (config.json, model.safetensors), copied by each test that changes it."""
    folder = tmp_path_factory.mktemp("saved") / "snap"
    tiny_model("HubertModel").save_pretrained(str(folder))
    return folder


@pytest.fixture
def snap(saved, tmp_path) -> Path:
    folder = tmp_path / "snap"
    folder.mkdir()
    for f in saved.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    return folder


def refused(capsys, tmp_path, snap, needle: str, *extra) -> None:
    """import-hf SNAP is one line holding `needle`; the snapshot is unchanged and nothing else is on disk."""
    before = snapshot(snap)
    res = fesa_main(capsys, "import-hf", snap, "--out", tmp_path / "out.pt", *extra)
    one_line_error(res, needle)
    assert needle in res.stderr.strip().splitlines()[-1], res.stderr  # the error's one line (fairseq may log before it)
    assert snapshot(snap) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]


def edit_config(snap: Path, **change) -> None:
    config = json.loads((snap / "config.json").read_text())
    (snap / "config.json").write_text(json.dumps({**config, **change}))


# 1. an output over or inside the command's input


@pytest.mark.parametrize("out", ["model.safetensors", "config.json", ".", "sub/ckpt.pt"])
def test_import_hf_never_writes_over_or_into_its_snapshot(capsys, snap, out):
    before = snapshot(snap)
    res = fesa_main(capsys, "import-hf", snap, "--out", snap / out, "--overwrite")
    one_line_error(res, "this command's own input" if out == "." else "lies inside this command's input")
    assert snapshot(snap) == before and sorted(p.name for p in snap.iterdir()) == sorted(p.name for p in before)


def test_import_hf_refuses_a_link_to_a_snapshot_file(capsys, snap, tmp_path):
    """The hub cache's layout: the snapshot's files are links to blobs; the link, not the blob, would be replaced."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (snap / "model.safetensors").rename(blobs / "abc")
    (snap / "model.safetensors").symlink_to(blobs / "abc")
    before = (blobs / "abc").read_bytes()
    res = fesa_main(capsys, "import-hf", snap, "--out", snap / "model.safetensors", "--overwrite")
    one_line_error(res, "this command's input")
    assert (snap / "model.safetensors").is_symlink() and (blobs / "abc").read_bytes() == before


def test_import_hf_beside_its_snapshot_is_written(capsys, snap, tmp_path):
    before = snapshot(snap)
    res = fesa_main(capsys, "import-hf", snap, "--out", tmp_path / "out.pt")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "out.pt").is_file() and snapshot(snap) == before


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """Stands in for a classifier: the output checks come before the checkpoint is read."""
    path = tmp_path / "run" / "checkpoint_best.pt"
    path.parent.mkdir()
    path.write_bytes(b"a checkpoint")
    return path


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--hf", "{run}"], "holds this command's own input"),
        (["--hf", "{ckpt}/hf"], "lies inside this command's input"),
        (["--hf", "{ckpt}", "--overwrite"], "this command's own input"),
        (["--onnx", "{ckpt}", "--overwrite"], "is this command's own input"),
        (["--onnx", "{run}/x.onnx", "--hf", "{run}", "--overwrite"], "holds this command's own input"),
    ],
)
def test_export_never_writes_over_or_around_its_checkpoint(capsys, checkpoint, args, needle):
    run = checkpoint.parent
    before = snapshot(run)
    res = fesa_main(capsys, "export", checkpoint, *[a.format(run=run, ckpt=checkpoint) for a in args])
    one_line_error(res, needle)
    assert snapshot(run) == before


def test_export_onnx_onto_the_checkpoint_itself_is_refused(capsys, tmp_path):
    pytest.importorskip("onnxruntime", reason="the [export] extra (make install brings it)")
    checkpoint = tmp_path / "model.onnx"  # a checkpoint named like the output
    checkpoint.write_bytes(b"a checkpoint")
    for extra in ([], ["--overwrite"], ["--int8", "--overwrite"]):
        res = fesa_main(capsys, "export", checkpoint, "--onnx", checkpoint, *extra)
        one_line_error(res, "this command's own input")
        assert checkpoint.read_bytes() == b"a checkpoint" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_export_onnx_keeps_an_existing_file_without_overwrite(capsys, checkpoint, tmp_path):
    pytest.importorskip("onnxruntime", reason="the [export] extra (make install brings it)")
    (tmp_path / "x.int8.onnx").write_bytes(b"mine")
    res = fesa_main(capsys, "export", checkpoint, "--onnx", tmp_path / "x.onnx", "--int8")
    one_line_error(res, "x.int8.onnx exists: pass --overwrite")
    assert (tmp_path / "x.int8.onnx").read_bytes() == b"mine" and not (tmp_path / "x.onnx").exists()


# 2. non-finite weights


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_weight_is_refused_by_name(capsys, tmp_path, snap, value):
    weights = safetensors_torch.load_file(str(snap / "model.safetensors"))
    name = "encoder.layers.0.attention.q_proj.weight"
    weights[name][0, 0] = value
    safetensors_torch.save_file(weights, str(snap / "model.safetensors"), metadata={"format": "pt"})
    refused(capsys, tmp_path, snap, f"{snap / 'model.safetensors'}: the tensor {name} holds NaN or infinite values")


def test_a_non_finite_weight_in_a_pytorch_bin_is_refused_by_name(capsys, tmp_path, snap):
    weights = safetensors_torch.load_file(str(snap / "model.safetensors"))
    weights["encoder.layer_norm.bias"][3] = float("nan")
    (snap / "model.safetensors").unlink()
    torch.save(weights, snap / "pytorch_model.bin")
    refused(capsys, tmp_path, snap, f"{snap / 'pytorch_model.bin'}: the tensor encoder.layer_norm.bias holds NaN")


def test_non_finite_layer_differences_are_a_failure(tmp_path, snap, monkeypatch):
    from fesa.errors import FesaError
    from fesa.huggingface import import_hf

    monkeypatch.setattr(import_hf, "layer_differences", lambda *a, **k: [float("nan"), 0.0, 0.0])
    with pytest.raises(FesaError, match="NaN or infinite"):
        import_hf.import_snapshot(snap, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


# 3. shard index


def shard(snap: Path, weight_map) -> None:
    """The snapshot's weights as one shard with an index; `weight_map` None: the index as written."""
    (snap / "model.safetensors").rename(snap / "model-00001-of-00001.safetensors")
    names = safetensors_torch.load_file(str(snap / "model-00001-of-00001.safetensors"))
    index = {"metadata": {}, "weight_map": {n: "model-00001-of-00001.safetensors" for n in names} if weight_map is None else weight_map}
    (snap / "model.safetensors.index.json").write_text(json.dumps(index))


def test_a_sharded_snapshot_imports(capsys, tmp_path, snap):
    shard(snap, None)
    res = fesa_main(capsys, "import-hf", snap, "--out", tmp_path / "out.pt")
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.parametrize("entry", ["/etc/passwd", "../other/model.safetensors", "..", "sub/model.safetensors", "a\\b.safetensors", ""])
def test_a_shard_outside_the_snapshot_is_refused(capsys, tmp_path, snap, entry):
    shard(snap, {"encoder.layer_norm.bias": entry})
    refused(capsys, tmp_path, snap, f"{snap / 'model.safetensors.index.json'}: weight_map['encoder.layer_norm.bias'] = {entry!r} is not a file name")


@pytest.mark.parametrize("weight_map", [["model-00001-of-00001.safetensors"], {"a": 1}, None, "x"])
def test_a_weight_map_of_another_shape_is_refused(capsys, tmp_path, snap, weight_map):
    shard(snap, {})
    index = snap / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    refused(capsys, tmp_path, snap, f"{index}: weight_map is not an object")


def test_an_index_that_is_not_an_object_is_refused(capsys, tmp_path, snap):
    shard(snap, {})
    (snap / "model.safetensors.index.json").write_text("[]")
    refused(capsys, tmp_path, snap, "model.safetensors.index.json is not a JSON object")


# 4. mistyped, missing or inconsistent config fields

DISAGREE = "conv_dim, conv_kernel, conv_stride and num_feat_extract_layers disagree"


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"conv_dim": None}, "conv_dim is missing (it must be a non-empty list of whole numbers above 0)"),
        ({"conv_dim": "512"}, "conv_dim='512' is not a non-empty list of whole numbers above 0"),
        ({"conv_dim": [24, 24, -24, 24, 24, 24, 24]}, "conv_dim=[24, 24, -24, 24, 24, 24, 24] is not a non-empty list"),
        ({"conv_dim": [24] * 6}, f"{DISAGREE} (conv_dim 6, conv_kernel 7"),
        ({"conv_stride": [5, 2.5, 2, 2, 2, 2, 2]}, "conv_stride=[5, 2.5, 2, 2, 2, 2, 2] is not"),
        ({"num_hidden_layers": None}, "num_hidden_layers is missing (it must be a whole number above 0)"),
        ({"num_hidden_layers": "2"}, "num_hidden_layers='2' is not a whole number above 0"),
        ({"num_hidden_layers": -1}, "num_hidden_layers=-1 is not a whole number above 0"),
        ({"num_hidden_layers": True}, "num_hidden_layers=True is not a whole number above 0"),
        ({"layer_norm_eps": "1e-5"}, "layer_norm_eps='1e-5' is not a finite number"),
        ({"layer_norm_eps": [1e-5]}, "layer_norm_eps=[1e-05] is not a finite number"),
        ({"hidden_act": 3}, "hidden_act=3 is not a string"),
        ({"hidden_act": "mish"}, "hidden_act='mish': fairseq knows"),
        ({"num_feat_extract_layers": "7"}, "num_feat_extract_layers='7' is not a whole number above 0"),
        ({"num_feat_extract_layers": 6}, f"{DISAGREE} (conv_dim 7, conv_kernel 7, conv_stride 7, num_feat_extract_layers 6)"),
        ({"hidden_size": 33}, "hidden_size=33 is not a multiple of num_attention_heads=2"),
        ({"num_conv_pos_embedding_groups": 5}, "hidden_size=32 is not a multiple of num_conv_pos_embedding_groups=5"),
        ({"model_type": ["hubert"]}, "model_type=['hubert'] is not a string"),
        ({"architectures": "HubertModel"}, "architectures='HubertModel' is not a list of strings"),
        ({"architectures": [{"a": 1}]}, "architectures=[{'a': 1}] is not a list of strings"),
        ({"conv_bias": "yes"}, "conv_bias='yes' is not true or false"),
    ],
)
def test_a_mistyped_config_field_is_one_line_naming_it(capsys, tmp_path, snap, change, needle):
    config = json.loads((snap / "config.json").read_text())
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}  # None: the field left out
    (snap / "config.json").write_text(json.dumps(config))
    refused(capsys, tmp_path, snap, f"{snap / 'config.json'}: {needle}")


def test_every_config_field_is_read_through_the_one_getter():
    """The settings table lists each field once with its kind; the converted settings use only those."""
    from fesa.huggingface.config import KINDS, SETTINGS, fairseq_model_settings, read_settings

    config = transformers.HubertConfig(**TINY).to_dict()
    assert all(kind in KINDS for kind, _ in SETTINGS.values())
    settings = read_settings(config, "config.json")
    assert set(settings) == set(SETTINGS)
    assert fairseq_model_settings(settings)["encoder_layers"] == 2


@pytest.mark.parametrize("text", ["[]", '"hubert"', "7"])
def test_a_config_that_is_not_an_object_is_refused(capsys, tmp_path, snap, text):
    (snap / "config.json").write_text(text)
    refused(capsys, tmp_path, snap, f"{snap / 'config.json'} is not a JSON object of settings")


# 5. a pytorch_model.bin of something else


@pytest.mark.parametrize(
    "content,what",
    [
        ([torch.zeros(2)], "a list"),
        (torch.zeros(2), "a Tensor"),
        ({"a": 1}, "a dict not all of name -> tensor"),
        ({1: torch.zeros(2)}, "a dict not all"),
    ],
)
def test_a_pytorch_bin_that_is_not_a_state_dict_is_refused(capsys, tmp_path, snap, content, what):
    (snap / "model.safetensors").unlink()
    torch.save(content, snap / "pytorch_model.bin")
    refused(capsys, tmp_path, snap, f"{snap / 'pytorch_model.bin'} holds {what}")


# 6. strict JSON


def test_duplicate_keys_in_config_json_are_refused(capsys, tmp_path, snap):
    text = (snap / "config.json").read_text().rstrip().rstrip("}") + ', "num_hidden_layers": 12}'
    (snap / "config.json").write_text(text)
    refused(capsys, tmp_path, snap, f"{snap / 'config.json'} gives the key 'num_hidden_layers' twice")


def test_duplicate_keys_and_nan_in_the_index_are_refused(capsys, tmp_path, snap):
    shard(snap, None)
    index = snap / "model.safetensors.index.json"
    index.write_text('{"weight_map": {"a": "x.safetensors"}, "weight_map": {"b": "y.safetensors"}}')
    refused(capsys, tmp_path, snap, f"{index} gives the key 'weight_map' twice")
    index.write_text('{"metadata": {"total_size": NaN}, "weight_map": {}}')
    refused(capsys, tmp_path, snap, f"{index} is not valid JSON")


def test_duplicate_keys_in_the_preprocessor_config_are_refused(capsys, tmp_path, snap):
    (snap / "preprocessor_config.json").write_text('{"do_normalize": false, "do_normalize": true}')
    refused(capsys, tmp_path, snap, "preprocessor_config.json gives the key 'do_normalize' twice")
    (snap / "preprocessor_config.json").write_text('{"do_normalize": "yes"}')
    refused(capsys, tmp_path, snap, "preprocessor_config.json: do_normalize='yes' is not true or false")


# the sweep: other damage


def test_a_truncated_safetensors_file_is_named(capsys, tmp_path, snap):
    data = (snap / "model.safetensors").read_bytes()
    (snap / "model.safetensors").write_bytes(data[: len(data) // 2])
    refused(capsys, tmp_path, snap, f"cannot read {snap / 'model.safetensors'}")


def test_a_tensor_in_two_shards_is_refused(capsys, tmp_path, snap):
    shard(snap, None)
    first = snap / "model-00001-of-00001.safetensors"
    (snap / "model-00002-of-00002.safetensors").write_bytes(first.read_bytes())
    index = snap / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["extra"] = "model-00002-of-00002.safetensors"
    index.write_text(json.dumps(data))
    refused(capsys, tmp_path, snap, "is in two shards")


def test_a_weight_of_the_wrong_shape_is_refused(capsys, tmp_path, snap):
    weights = safetensors_torch.load_file(str(snap / "model.safetensors"))
    weights["encoder.layer_norm.bias"] = torch.zeros(5)
    safetensors_torch.save_file(weights, str(snap / "model.safetensors"), metadata={"format": "pt"})
    refused(capsys, tmp_path, snap, "other shapes: encoder.layer_norm.bias (5,)")


def test_a_dropout_transformers_cannot_build_is_one_line(capsys, tmp_path, snap):
    edit_config(snap, hidden_dropout="x")
    refused(capsys, tmp_path, snap, "transformers cannot load this snapshot")


def test_a_config_far_larger_than_its_tensors_allocates_nothing(capsys, tmp_path, snap):
    """hidden_size=200000 would have fairseq allocate 640 GB before the shapes were compared (a traceback, or worse)."""
    edit_config(snap, hidden_size=200000)
    refused(capsys, tmp_path, snap, "config.json describes a model of at least 480051209456 weights, its tensors hold 31680")


def test_a_receptive_field_longer_than_the_check_is_refused(capsys, tmp_path, snap):
    edit_config(snap, conv_kernel=[40000, 3, 3, 3, 3, 2, 2])
    refused(capsys, tmp_path, snap, "conv_kernel and conv_stride see 40390 samples a frame, more than the 32000 of the check")


def test_export_writes_both_and_replaces_the_onnx_file_only_with_overwrite(finetuned_classifier, tmp_path, capsys):
    """The folder goes first, so an ONNX file asked inside it is kept; an existing ONNX file needs --overwrite."""
    pytest.importorskip("onnxruntime", reason="the [export] extra (make install brings it)")
    checkpoint = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    before = checkpoint.read_bytes()
    res = fesa_main(capsys, "export", checkpoint, "--hf", tmp_path / "hf", "--onnx", tmp_path / "hf" / "model.onnx")
    assert res.returncode == 0, res.stderr[-3000:]
    assert {"model.onnx", "model.safetensors", "fesa_export.json"} <= {p.name for p in (tmp_path / "hf").iterdir()}
    onnx = (tmp_path / "hf" / "model.onnx").read_bytes()
    res = fesa_main(capsys, "export", checkpoint, "--onnx", tmp_path / "hf" / "model.onnx")
    one_line_error(res, "model.onnx exists: pass --overwrite")
    assert (tmp_path / "hf" / "model.onnx").read_bytes() == onnx and checkpoint.read_bytes() == before
