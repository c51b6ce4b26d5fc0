"""emotion_hubert_pretraining + emotion_hubert for real: TAPT/CPT warm starts, the checks, the masking."""

import shutil

import numpy as np
import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.data.data_utils import compute_mask_indices
from omegaconf import OmegaConf

import fesa_fairseq  # noqa: F401
from fesa_fairseq.errors import InputError
from fesa_fairseq.models.emotion_hubert import EmotionHubertModel

from tiny_hubert import PLUGIN, finetune, hydra_train

pytestmark = pytest.mark.slow


def cpt(fold, labels, run, *overrides):
    return hydra_train("cpt", "tiny", run, f"task.data={fold}", f"task.label_dir={labels}", "optimization.max_update=4", *overrides)


@pytest.fixture(scope="module")
def cpt_run(stock_hubert, stock_labels, demo_folds, tmp_path_factory):
    run = tmp_path_factory.mktemp("cpt")
    res = cpt(demo_folds / "fold1", stock_labels, run, f"model.init_checkpoint={stock_hubert}")
    assert res.returncode == 0, res.stderr[-4000:]
    return run


def test_cpt_warm_starts_and_names_the_reset_tensors(cpt_run, stock_hubert):
    log = (cpt_run / "hydra_train.log").read_text()
    assert f"init_checkpoint {stock_hubert}: loaded 49 tensors" in log
    assert "label embeddings reset (auto: label dictionary 0: other symbols or order (14 there, 12 here))" in log
    assert "re-initialised final_proj.bias (checkpoint: (32,), here: (32,)), final_proj.weight" in log
    assert "label_embs_concat (checkpoint: (14, 32), here: (12, 32))" in log  # K 10 -> 8, plus 4 special symbols
    assert list((cpt_run / "tblog" / "train").glob("events.out.tfevents.*"))


def test_cpt_checkpoint_is_a_stock_loadable_hubert_and_a_w2v_path(cpt_run, stock_hubert, demo_folds, tmp_path):
    ckpt = cpt_run / "checkpoints" / "checkpoint_last.pt"
    (model,), cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)])
    assert isinstance(model, EmotionHubertModel) and cfg.task._name == "emotion_hubert_pretraining"
    init = torch.load(stock_hubert, weights_only=False)["model"]
    trained = model.state_dict()
    assert not torch.equal(trained["encoder.layers.0.fc1.weight"], init["encoder.layers.0.fc1.weight"])  # it trained
    torch.testing.assert_close(trained["feature_extractor.conv_layers.0.0.weight"].shape, init["feature_extractor.conv_layers.0.0.weight"].shape)
    res = finetune(demo_folds / "fold1", ckpt, tmp_path / "ft", "optimization.max_update=2")
    assert res.returncode == 0, res.stderr[-4000:]


def test_cpt_from_a_finetuned_classifier(finetuned_classifier, stock_labels, demo_folds, tmp_path):
    """Warm start from the classifier's encoder. fairseq's remove_pretraining_modules drops final_proj but keeps
    label_embs_concat, which no longer fits the new label set: both start afresh."""
    ckpt = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    res = cpt(demo_folds / "fold1", stock_labels, tmp_path / "run", f"model.init_checkpoint={ckpt}")
    assert res.returncode == 0, res.stderr[-4000:]
    log = (tmp_path / "run" / "hydra_train.log").read_text()
    assert f"init_checkpoint {ckpt}: loaded 49 tensors" in log
    assert "final_proj.weight (checkpoint: absent, here: (32, 64))" in log
    classifier = torch.load(ckpt, weights_only=False)["model"]
    (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(tmp_path / "run" / "checkpoints" / "checkpoint_last.pt")])
    assert model.state_dict()["mask_emb"].shape == classifier["encoder.w2v_model.mask_emb"].shape


def test_tapt_from_scratch_on_mfcc_labels(demo_folds, tmp_path):
    """The demo's bootstrap: no checkpoint at all, MFCC k-means labels at 100 Hz."""
    from tiny_hubert import run_fesa

    labels = tmp_path / "mfcc"
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        demo_folds / "fold1",
        "--splits",
        "train,valid",
        "--features",
        "mfcc",
        "--clusters",
        "10",
        "--out",
        labels,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    res = hydra_train(
        "tapt",
        "tiny",
        tmp_path / "run",
        f"task.data={demo_folds / 'fold1'}",
        f"task.label_dir={labels}",
        "model.label_rate=100",
        "optimization.max_update=3",
    )
    assert res.returncode == 0, res.stderr[-4000:]
    assert "[fesa_fairseq.models.emotion_hubert]" not in (tmp_path / "run" / "hydra_train.log").read_text()  # no warm start


def test_label_line_of_the_wrong_length_is_refused(stock_labels, demo_folds, tmp_path, stock_hubert):
    labels = shutil.copytree(stock_labels, tmp_path / "km")
    lines = (labels / "valid.km").read_text().splitlines()
    lines[3] = " ".join(lines[3].split()[:-7])
    (labels / "valid.km").write_text("\n".join(lines) + "\n")
    res = cpt(demo_folds / "fold1", labels, tmp_path / "run", f"model.init_checkpoint={stock_hubert}")
    assert res.returncode != 0
    assert f"{labels / 'valid.km'}:4: " in res.stderr and "the labels do not belong to this manifest" in res.stderr


def test_architecture_mismatch_is_a_clear_error(stock_hubert, stock_labels, tmp_path):
    cfg = OmegaConf.load(PLUGIN / "config" / "cpt" / "tiny.yaml")
    from fesa_fairseq.models.emotion_hubert import EmotionHubertConfig
    from fesa_fairseq.tasks.emotion_hubert_pretraining import EmotionHubertPretrainingConfig, EmotionHubertPretrainingTask

    task = EmotionHubertPretrainingTask(
        OmegaConf.structured(EmotionHubertPretrainingConfig(data=str(tmp_path), label_dir=str(stock_labels), labels=["km"], label_rate=50.0))
    )
    model_cfg = OmegaConf.merge(
        OmegaConf.structured(EmotionHubertConfig(label_rate=50.0)),
        {k: v for k, v in cfg.model.items() if k not in ("_name", "init_checkpoint")},
        {"encoder_layers": 3},
    )
    model = EmotionHubertModel.build_model(model_cfg, task)
    with pytest.raises(InputError, match=r"does not fit this model: encoder.layers.2.self_attn.k_proj.weight is missing"):
        model.load_init_checkpoint(str(stock_hubert), task.dictionaries)


def build_warm_model(tmp_path, dict_lines, encoder_cfg):
    from fesa_fairseq.models.emotion_hubert import EmotionHubertConfig
    from fesa_fairseq.tasks.emotion_hubert_pretraining import EmotionHubertPretrainingConfig, EmotionHubertPretrainingTask

    (tmp_path / "dict.km.txt").write_text("".join(f"{line}\n" for line in dict_lines))
    task = EmotionHubertPretrainingTask(
        OmegaConf.structured(EmotionHubertPretrainingConfig(data=str(tmp_path), label_dir=str(tmp_path), labels=["km"], label_rate=50.0))
    )
    model_cfg = OmegaConf.merge(
        OmegaConf.structured(EmotionHubertConfig(label_rate=50.0)), {k: v for k, v in encoder_cfg.items() if k not in ("_name", "init_checkpoint")}
    )
    return EmotionHubertModel.build_model(model_cfg, task), task


@pytest.mark.parametrize(
    "mode, dict_lines, expect",
    [
        ("auto", [f"{i} 1" for i in range(10)], "kept"),  # the very labels the checkpoint was trained on
        ("auto", [f"{i} {i + 1}" for i in range(10)], "reset"),  # same K, another clustering: same symbols, other counts
        ("auto", [f"{i} 1" for i in range(8)], "reset"),  # another K
        ("auto", [f"{i} 1" for i in (1, 0, *range(2, 10))], "reset"),  # same symbols, other order
        ("always", [f"{i} 1" for i in range(10)], "reset"),
        ("never", [f"{i} {i + 1}" for i in range(10)], "kept"),
    ],
    ids=["auto-same", "auto-same-K-other-clusters", "auto-other-K", "auto-other-order", "always", "never"],
)
def test_reset_label_embeddings(stock_hubert, tmp_path, caplog, mode, dict_lines, expect):
    """stock_hubert was trained on dict.km.txt lines '0 1' .. '9 1' (tiny_hubert.write_random_km)."""
    cfg = OmegaConf.load(PLUGIN / "config" / "cpt" / "tiny.yaml")
    model, task = build_warm_model(tmp_path, dict_lines, cfg.model)
    fresh = model.label_embs_concat.detach().clone()
    with caplog.at_level("INFO", logger="fesa_fairseq.models.emotion_hubert"):
        model.load_init_checkpoint(str(stock_hubert), task.dictionaries, mode)
    source = torch.load(stock_hubert, weights_only=False)["model"]["label_embs_concat"]
    if expect == "kept":
        torch.testing.assert_close(model.label_embs_concat.detach(), source)
        assert "label embeddings kept" in caplog.text
    else:
        torch.testing.assert_close(model.label_embs_concat.detach(), fresh)
        assert "label embeddings reset" in caplog.text
    assert f"{mode}" in caplog.text


def test_never_reset_refuses_label_embeddings_that_do_not_fit(stock_hubert, tmp_path):
    cfg = OmegaConf.load(PLUGIN / "config" / "cpt" / "tiny.yaml")
    model, task = build_warm_model(tmp_path, [f"{i} 1" for i in range(8)], cfg.model)
    message = r"reset_label_embeddings=never, but the label embeddings of .* are \(14, 32\) and this label set needs \(12, 32\)"
    with pytest.raises(InputError, match=message):
        model.load_init_checkpoint(str(stock_hubert), task.dictionaries, "never")


def masked_share(mask_prob: float, mask_length: int) -> float:
    rng = np.random.default_rng(0)
    seconds = np.clip(np.exp(np.log(3.5) + 0.7 * rng.standard_normal(2000)), 0.6, 34)
    np.random.seed(0)
    masked = total = 0
    for t in ((seconds * 16000 - 400) // 320 + 1).astype(int):
        m = compute_mask_indices((1, int(t)), None, mask_prob, mask_length, min_masks=2)
        masked, total = masked + m.sum(), total + m.size
    return masked / total


@pytest.mark.parametrize("stage, low, high", [("cpt", 0.18, 0.22), ("tapt", 0.4, 0.6)])
def test_masking_of_the_configs(stage, low, high):
    """CPT masks 20% of frames (the paper); TAPT keeps HuBERT's own masking, about half the frames."""
    for name in ("hubert_base", "tiny"):
        model = OmegaConf.load(PLUGIN / "config" / stage / f"{name}.yaml").model
        assert low < masked_share(model.mask_prob, model.mask_length) < high
