"""Fine-tuning for real: a tiny HuBERT made by stock fairseq, fine-tuned by the plugin with fairseq-hydra-train."""

import json

import pytest
import torch
from fairseq import checkpoint_utils

import fesa_fairseq  # noqa: F401
from fesa_fairseq.models.hubert_emotion_classifier import HubertEmotionClassifier

from tiny_hubert import finetune, frames, run_fesa, to_release_format

pytestmark = pytest.mark.slow


def test_training_logs_ua_and_wa(finetuned_classifier):
    log = (finetuned_classifier / "hydra_train.log").read_text()
    valid = [json.loads(line.split(" - ", 1)[1]) for line in log.splitlines() if "[valid][INFO]" in line]
    assert valid and all({"valid_ua", "valid_wa", "valid_loss"} <= set(v) for v in valid)
    assert 0 <= float(valid[-1]["valid_ua"]) <= 100
    assert "valid_best_ua" in valid[-1]
    assert list((finetuned_classifier / "tblog" / "valid").glob("events.out.tfevents.*"))
    assert (finetuned_classifier / "checkpoints" / "checkpoint_best.pt").is_file()


def test_checkpoint_loads_with_stock_fairseq_without_the_pretraining_files(finetuned_classifier, tmp_path, demo_folds):
    """The classifier checkpoint carries what rebuilding its encoder needs: no w2v_path, no label_dir."""
    state = torch.load(finetuned_classifier / "checkpoints" / "checkpoint_best.pt", weights_only=False)
    state["cfg"]["model"]["w2v_path"] = str(tmp_path / "gone.pt")
    assert state["task_state"]["w2v_args"]["model"]["encoder_layers"] == 2
    state["task_state"]["w2v_args"]["task"]["label_dir"] = str(tmp_path / "gone")
    moved = tmp_path / "moved.pt"
    torch.save(state, moved)
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(moved)], arg_overrides={"data": str(demo_folds / "fold1")})
    model = models[0].eval()
    assert isinstance(model, HubertEmotionClassifier) and cfg.model.pooling == "attention"
    original = torch.load(finetuned_classifier / "checkpoints" / "checkpoint_best.pt", weights_only=False)["model"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, original[name].float())

    source = torch.randn(2, 20000)
    padding = torch.zeros(2, 20000, dtype=torch.bool)
    padding[1, 12000:] = True
    with torch.no_grad():
        out = model(source, padding)
        feats, feat_padding = model.extract_features(source, padding, mask=False, output_layer=1)
    assert out["logits"].shape == (2, 4)
    assert feats.shape == (2, frames(20000), 64)
    assert feat_padding[1].sum() > 0 and not feat_padding[0].any()
    torch.testing.assert_close(out["attention"].sum(-1), torch.ones(2))
    assert (out["attention"][out["padding_mask"]] == 0).all()


def test_checkpoint_loads_without_its_fold_folder(finetuned_classifier, tmp_path):
    """The classes and their training counts are in fairseq's task state: the checkpoint alone is enough."""
    ckpt = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    assert torch.load(ckpt, weights_only=False)["task_state"]["labels"] == ["neu", "hap", "ang", "sad"]
    (model,), _, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"data": str(tmp_path / "gone")})
    assert task.labels == ["neu", "hap", "ang", "sad"] and len(task.label_counts) == 4 and min(task.label_counts) > 0
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 16000))["logits"].shape == (1, 4)


def test_fesa_evaluate_scores_the_test_split(finetuned_classifier, demo_folds, tmp_path):
    fold = demo_folds / "fold1"
    res = run_fesa(
        "-q",
        "evaluate",
        finetuned_classifier / "checkpoints" / "checkpoint_best.pt",
        fold,
        "--out",
        tmp_path / "ev",
        "--device",
        "cpu",
        "--timelines",
        "2",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "UA " in res.stdout and "true\\pred" in res.stdout
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    n = len((fold / "test.emo").read_text().split())
    assert m["labels"] == ["neu", "hap", "ang", "sad"] and m["utterances"] == n
    assert sum(map(sum, m["confusion"])) == n
    rows = (tmp_path / "ev" / "predictions.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["utt_id", "label", "prediction", "p_neu", "p_hap", "p_ang", "p_sad"]
    assert [r.split("\t")[1] for r in rows[1:]] == (fold / "test.emo").read_text().split()
    correct = sum(r.split("\t")[1] == r.split("\t")[2] for r in rows[1:])
    assert m["wa"] == pytest.approx(round(100 * correct / n, 2))
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 1000
    first = [r.split("\t")[0] for r in rows[1:3]]
    assert sorted(p.stem for p in (tmp_path / "ev" / "timelines").glob("*.png")) == sorted(first)


@pytest.mark.parametrize("legacy_args", [False, True], ids=["release_cfg", "release_args"])
def test_official_release_formats_as_w2v_path(stock_hubert, demo_folds, tmp_path, legacy_args):
    release = to_release_format(stock_hubert, tmp_path / "hubert_release.pt", legacy_args=legacy_args)
    res = finetune(demo_folds / "fold1", release, tmp_path / "run", "optimization.max_update=2")
    assert res.returncode == 0, res.stderr[-4000:]
    assert (tmp_path / "run" / "checkpoints" / "checkpoint_last.pt").is_file()


def test_wrong_kind_of_checkpoint_is_refused(finetuned_classifier, demo_folds, tmp_path, stock_hubert):
    classifier = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    res = finetune(demo_folds / "fold1", classifier, tmp_path / "run", "optimization.max_update=1")
    assert res.returncode != 0
    assert f"model.w2v_path={classifier} holds a 'hubert_emotion_classifier' model" in res.stderr
    res = run_fesa("evaluate", stock_hubert, demo_folds / "fold1", "--out", tmp_path / "ev")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        f"fesa evaluate: error: {stock_hubert} holds a 'hubert' model, not a fine-tuned hubert_emotion_classifier: "
        "give the checkpoint_best.pt of a fine-tuning run"
    )
    assert not (tmp_path / "ev").exists()


def test_hydra_submitit_sweep_with_the_plugin_yaml(stock_hubert, demo_folds, tmp_path):
    """fairseq-hydra-train -m with hydra's submitit launcher (local here; submitit_slurm on a cluster)."""
    res = finetune(
        demo_folds / "fold1",
        stock_hubert,
        tmp_path / "unused",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        "optimization.max_update=1",
        "model.pooling=attention,mean",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=5",
        "-m",
    )  # hydra takes -m after the overrides, not before
    assert res.returncode == 0, res.stderr[-4000:]
    runs = sorted(p.parent.parent.name for p in (tmp_path / "sweep").glob("*/checkpoints/checkpoint_last.pt"))
    assert runs == ["tiny__model.pooling-attention__optimization.max_update-1", "tiny__model.pooling-mean__optimization.max_update-1"]
