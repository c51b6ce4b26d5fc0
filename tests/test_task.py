import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf

from fesa_fairseq.errors import InputError
from fesa_fairseq.tasks.speech_emotion_classification import SpeechEmotionClassificationConfig, SpeechEmotionClassificationTask


def make_task(data, **overrides):
    cfg = OmegaConf.structured(SpeechEmotionClassificationConfig(data=str(data), train_subset="train", seed=1, **overrides))
    return SpeechEmotionClassificationTask.setup_task(cfg)


@pytest.fixture
def fold(demo_folds, tmp_path):
    return shutil.copytree(demo_folds / "fold1", tmp_path / "fold1")


def test_reads_a_fold(fold):
    task = make_task(fold)
    assert task.labels == ["neu", "hap", "ang", "sad"]
    for split in ("train", "valid", "test"):
        task.load_dataset(split)
        emo = (fold / f"{split}.emo").read_text().split()
        assert [task.labels[t] for t in task.dataset(split).targets] == emo


def test_crops_training_utterances_only(fold):
    task = make_task(fold, max_sample_size=16000, random_crop=True)
    for split in ("train", "test"):
        task.load_dataset(split)
    train, test = task.dataset("train"), task.dataset("test")
    assert max(len(train[i]["source"]) for i in range(len(train))) == 16000
    assert [len(test[i]["source"]) for i in range(len(test))] == list(test.sizes)
    assert max(test.sizes) > 16000


def test_batches_hold_utterances_of_similar_length(fold):
    task = make_task(fold)
    task.load_dataset("train")
    ds = task.dataset("train")
    batches = task.get_batch_iterator(dataset=ds, max_tokens=160000, required_batch_size_multiple=1).next_epoch_itr(shuffle=True)
    real = padded = 0
    for sample in batches:
        mask = sample["net_input"]["padding_mask"]
        real += int((~mask).sum())
        padded += mask.numel()
        assert mask.shape[1] == (~mask).sum(1).max()
    assert real == ds.sizes.sum()
    assert real / padded > 0.9  # size-sorted buckets: little padding despite 1-4 s utterances


def test_class_balanced_sampling_and_weights(fold):
    task = make_task(fold, class_balance="sampling")
    task.load_dataset("train")
    ds = task.dataset("train")
    drawn = []
    for epoch in range(1, 30):
        ds.set_epoch(epoch)
        drawn.append(ds.targets[ds.ordered_indices()])
    drawn = np.concatenate(drawn)
    shares = np.bincount(drawn, minlength=4) / len(drawn)
    assert np.abs(shares - 0.25).max() < 0.05
    assert not ds.can_reuse_epoch_itr_across_epochs
    weights = make_task(fold, class_balance="weights").class_weights
    counts = np.array(task.label_counts, dtype=float)
    np.testing.assert_allclose(weights.numpy(), (1 / counts) / (1 / counts).mean(), rtol=1e-6)


def test_unknown_label_names_file_and_line(fold):
    lines = (fold / "valid.emo").read_text().splitlines()
    lines[2] = "fru"
    (fold / "valid.emo").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{fold / 'valid.emo'}:3: label 'fru' is not in {fold / 'dict.emo.txt'} \(neu, hap, ang, sad\)"):
        make_task(fold).load_dataset("valid")


def test_tsv_and_emo_of_different_lengths(fold):
    lines = (fold / "test.emo").read_text().splitlines()
    (fold / "test.emo").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(InputError, match=f"{fold / 'test.tsv'} lists {len(lines)} utterances but {fold / 'test.emo'} has {len(lines) - 1} labels"):
        make_task(fold).load_dataset("test")


def test_sample_count_that_disagrees_with_the_file(fold):
    lines = (fold / "train.tsv").read_text().splitlines()
    rel, n = lines[3].split("\t")
    lines[3] = f"{rel}\t{int(n) + 5}"
    (fold / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=rf"{fold / 'train.tsv'}:4: .*{rel} has {n} samples but the manifest says {int(n) + 5}"):
        make_task(fold).load_dataset("train")


def test_missing_wav(fold, tmp_path):
    lines = (fold / "train.tsv").read_text().splitlines()
    lines[0] = str(tmp_path / "elsewhere")
    (fold / "train.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=f"{fold / 'train.tsv'}:2: missing wav {tmp_path / 'elsewhere'}"):
        make_task(fold).load_dataset("train")


def test_malformed_dictionary(fold):
    (fold / "dict.emo.txt").write_text("neu 10\nhap\n")
    with pytest.raises(InputError, match=rf"{fold / 'dict.emo.txt'}:2: expected 'label count', got 'hap'"):
        make_task(fold)
