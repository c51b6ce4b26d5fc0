"""protocol: fold | authors. Under authors, one TAPT and its labels over every session's audio, the emotion labels and
CPT of each fold over it too, fine-tuning and scoring per fold; under either, no test-session label reaches a stage
that learns, and under fold no test-session audio reaches TAPT, k-means or CPT."""

import re
from pathlib import Path

import pytest

from tiny_hubert import run_fesa

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "examples" / "iemocap" / "experiment.yaml"
SMALL = [f"source_checkpoint={ROOT / 'examples' / 'demo' / 'source_model.pt'}", "tapt_labels.kmeans_model=null"]
SMALL += ["tapt_labels.layer=2", "emotion_labels.layer=2"]  # the demo's 2-layer model stands in for hubert_base_ls960
AUDIO_ONLY = ("tapt-labels", "tapt", "emotion-labels", "cpt")  # the stages that see audio and never a label
SCORING = ("reference", "evaluate")  # the stages that read the test split: scoring it, after training


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """The IEMOCAP recipe's dry-run under each protocol: stage key -> command."""
    root = tmp_path_factory.mktemp("iemocap") / "IEMOCAP_full_release"
    for s in range(1, 6):
        (root / f"Session{s}").mkdir(parents=True)
    out = {}
    for protocol in ("fold", "authors"):
        exp = root.parent / f"exp-{protocol}"
        res = run_fesa("run", RECIPE, "--exp-dir", exp, "--dry-run", f"corpus={root}", *SMALL, f"protocol={protocol}")
        assert res.returncode == 0, res.stderr[-3000:]
        out[protocol] = (exp, dict(re.findall(r"^# (\S+)\n(?:CUDA_VISIBLE_DEVICES=\S+ )?(.+)$", res.stdout, flags=re.M)))
    return out


def _reads(command: str) -> list:
    """The manifest folders a command reads: --manifest-dir, task.data, a fold folder given as an argument."""
    return re.findall(r"(?:--manifest-dir |task\.data=|\s)(/\S*?(?:manifests/fold\d|all-audio))(?=\s|$)", command)


def test_authors_share_one_tapt_over_every_session_and_fine_tune_per_fold(plans):
    exp, stages = plans["authors"]
    keys = list(stages)
    assert [k for k in keys if k.startswith("all/")] == ["all/prepare", "all/all-audio", "all/tapt-labels", "all/tapt"]
    assert not [k for k in keys if re.match(r"fold\d/tapt(-labels)?$", k)]
    assert stages["all/all-audio"].split(" --folds ")[1].startswith("1,2,3,4,5 ")
    assert _reads(stages["all/tapt-labels"]) == _reads(stages["all/tapt"]) == [str(exp / "all" / "all-audio")]
    for k in range(1, 6):
        assert _reads(stages[f"fold{k}/tapt-finetune"]) == [str(exp / "manifests" / f"fold{k}")]
        assert f"model.w2v_path={exp}/all/tapt/checkpoints" in stages[f"fold{k}/tapt-finetune"]
        labels = stages[f"fold{k}/emotion-labels/L2-K50"]  # fold k's fine-tuned model clusters every session's audio
        assert _reads(labels) == [str(exp / "all" / "all-audio")] and f"{exp}/fold{k}/tapt-finetune/checkpoints" in labels
        assert _reads(stages[f"fold{k}/cpt/L2-K50"]) == [str(exp / "all" / "all-audio")]
        assert _reads(stages[f"fold{k}/finetune/L2-K50-attention"]) == [str(exp / "manifests" / f"fold{k}")]


def test_under_fold_no_test_session_audio_reaches_tapt_k_means_or_cpt(plans):
    exp, stages = plans["fold"]
    assert "all-audio" not in " ".join(stages.values())
    for key, command in stages.items():
        name = key.split("/")[1]
        if name in AUDIO_ONLY:
            assert _reads(command) == [str(exp / "manifests" / key.split("/")[0])], key  # its own fold: train and valid
            assert "--split " not in command and ("--splits train,valid " in command or name in ("tapt", "cpt")), key


@pytest.mark.parametrize("protocol", ["fold", "authors"])
def test_no_test_session_label_reaches_a_stage_that_learns(plans, protocol):
    """Only the scoring stages name the test split; every other stage reads a fold's train and valid splits (the
    training configs' subsets) or the all-audio folder, which holds no label (next test)."""
    _, stages = plans[protocol]
    for key, command in stages.items():
        name = key.split("/")[1]
        assert ("--split test" in command) == (name in SCORING), key
        assert ".emo" not in command and "test.tsv" not in command, key
        if name not in SCORING + ("prepare", "all-audio"):
            assert "--splits" not in command or "--splits train,valid " in command, key
            assert "dataset.valid_subset" not in command and "dataset.train_subset" not in command, key
    for config in (ROOT / "fesa_fairseq" / "config").glob("*/*.yaml"):
        assert "test" not in re.findall(r"^\s*(?:train|valid)_subset:\s*(\S+)", config.read_text(), flags=re.M), config


def test_all_audio_holds_every_session_and_no_label(demo_folds, tmp_path):
    out = tmp_path / "all"
    res = run_fesa("-q", "pool-audio", demo_folds, "--folds", "1,2,3,4,5", "--out", out)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["pool.json", "train.tsv", "valid.tsv"]  # audio only: no .emo, no dict
    rows = lambda path: set(path.read_text().splitlines()[1:])  # noqa: E731
    fold1 = demo_folds / "fold1"
    assert rows(out / "train.tsv") == rows(fold1 / "train.tsv") | rows(fold1 / "valid.tsv") | rows(fold1 / "test.tsv")
    assert (
        rows(out / "valid.tsv") == rows(fold1 / "valid.tsv")
        and (out / "train.tsv").read_text().splitlines()[0] == (fold1 / "test.tsv").read_text().splitlines()[0]
    )
    inside = run_fesa("-q", "pool-audio", demo_folds, "--folds", "1", "--out", demo_folds / "all")
    assert inside.returncode == 2 and not (demo_folds / "all").exists()


def test_authors_refuse_what_would_put_test_labels_into_cpt(plans, tmp_path):
    root = next(iter(plans.values()))[0].parent / "IEMOCAP_full_release"
    res = run_fesa("run", RECIPE, "--exp-dir", tmp_path / "e", "--dry-run", f"corpus={root}", *SMALL, "protocol=authors", "cpt_targets=utterance")
    assert res.returncode == 2 and "cpt_targets utterance would put the test session's classes into CPT" in res.stderr
    res = run_fesa("run", RECIPE, "--exp-dir", tmp_path / "e", "--dry-run", f"corpus={root}", *SMALL, "protocol=both")
    assert res.returncode == 2 and "'protocol' must be fold or authors, got 'both'" in res.stderr
