"""The control targets of continued pretraining (fesa control-labels) and their place in fesa run's plan."""

import json
import re

import numpy as np
import pytest
import yaml

from fesa.corpora.demo import DEMO_SEGMENTS_FILE
from fesa.labels.control_labels import make_control_labels, shuffled_lines
from fesa_fairseq.data.labels import read_labelled_split

from tiny_hubert import TINY_RUN, run_fesa


def test_utterance_labels_are_one_class_per_utterance(stock_labels, demo_folds, tmp_path):
    out = tmp_path / "utt"
    info = make_control_labels(stock_labels, demo_folds / "fold1", out, "utterance")
    assert info["kind"] == "utterance" and json.loads((out / "labels.json").read_text())["kind"] == "utterance"
    for split in ("train", "valid"):
        truth = read_labelled_split(demo_folds / "fold1", split)
        ours, clusters = (out / f"{split}.km").read_text().splitlines(), (stock_labels / f"{split}.km").read_text().splitlines()
        assert [len(line.split()) for line in ours] == [len(line.split()) for line in clusters]
        assert [set(line.split()) for line in ours] == [{str(t)} for t in truth.targets]
    assert (out / "dict.km.txt").read_text().split()[::2] == ["0", "1", "2", "3"]  # one label per emotion
    assert not (out / "test.km").exists()


def test_shuffled_labels_keep_lengths_and_cluster_runs_but_not_the_tie_to_audio(stock_labels, demo_folds, tmp_path):
    out = tmp_path / "shuf"
    run = run_fesa("control-labels", stock_labels, "--kind", "shuffled", "--manifest-dir", demo_folds / "fold1", "--out", out)
    assert run.returncode == 0, run.stderr[-2000:]
    for split in ("train", "valid"):
        ours, clusters = (out / f"{split}.km").read_text().splitlines(), (stock_labels / f"{split}.km").read_text().splitlines()
        assert [len(line.split()) for line in ours] == [len(line.split()) for line in clusters]
        assert sum(a != b for a, b in zip(ours, clusters)) == len(clusters)  # no utterance keeps its own sequence
        # the statistics are the clusters' own: each line is another line of the split, cut or tiled to length (a
        # histogram tolerance would depend on the tiny model's clusters, which differ from run to run)
        for i, line in enumerate(ours):
            n = len(line.split())
            assert any(j != i and line.split() == (source.split() * n)[:n] for j, source in enumerate(clusters)), i
    assert (out / "dict.km.txt").read_text().count("\n") == (stock_labels / "dict.km.txt").read_text().count("\n")
    again = run_fesa("control-labels", stock_labels, "--kind", "shuffled", "--manifest-dir", demo_folds / "fold1", "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # never replaced without asking


def test_shuffled_lines_by_hand():
    lines = ["1 1 1", "2 2", "3 3 3 3", "4"]
    got = shuffled_lines(lines, np.random.default_rng(0))
    assert [len(line.split()) for line in got] == [3, 2, 4, 1]
    # by length: 4 (1) -> 2 2 (2) -> 1 1 1 (3) -> 3 3 3 3 (4) -> back to the shortest
    assert got == ["3 3 3", "1 1", "4 4 4 4", "2"]


def test_a_control_needs_labels_of_the_same_fold(stock_labels, demo_folds, tmp_path):
    res = run_fesa("control-labels", stock_labels, "--kind", "utterance", "--manifest-dir", demo_folds / "fold2", "--out", tmp_path / "x")
    assert res.returncode == 2 and "labels of another fold?" in res.stderr and not (tmp_path / "x").exists()


def test_the_grid_of_targets_shares_what_cells_have_in_common(demo_folds, tmp_path):
    config = tmp_path / "e.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(demo_folds.parent / "corpus"), **TINY_RUN}))
    res = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run", "--grid", "cpt_targets=clusters,utterance,shuffled,tapt")
    assert res.returncode == 0, res.stderr[-3000:]
    keys = re.findall(r"^# (fold1/\S+)", res.stdout, flags=re.M)
    assert [k for k in keys if "labels" in k] == [
        "fold1/tapt-labels",
        "fold1/emotion-labels/L1-K6",
        "fold1/emotion-labels/L1-K6-utterance",
        "fold1/emotion-labels/L1-K6-shuffled",
    ]
    assert [k for k in keys if "/cpt/" in k] == ["fold1/cpt/L1-K6", "fold1/cpt/L1-K6-utterance", "fold1/cpt/L1-K6-shuffled", "fold1/cpt/tapt-units"]
    assert len([k for k in keys if "/evaluate/" in k]) == 5 and keys.count("fold1/tapt-finetune") == 1
    script = res.stdout
    assert f"task.label_dir={tmp_path / 'exp' / 'fold1' / 'tapt-labels'}" in script  # the tapt control reads TAPT's own labels
    assert "--kind shuffled" in script and "--kind utterance" in script
    # each CPT trains with the same command but its labels
    cpts = [line for line in script.splitlines() if "config/cpt" in line]
    assert len({re.sub(r"(task.label_dir|hydra.run.dir)=\S+| model.label_rate=100", "", line) for line in cpts}) == 1
    assert [line for line in cpts if "label_rate=100" in line] == [cpts[-1]]  # bootstrap: TAPT's labels are MFCC's, 100 a second


@pytest.mark.parametrize("value, message", [("cpt_targets=frames", "must be one of clusters, utterance, shuffled, tapt, got 'frames'")])
def test_bad_targets_are_refused(demo_folds, tmp_path, value, message):
    config = tmp_path / "e.yaml"
    config.write_text(yaml.safe_dump({"corpus": str(demo_folds.parent / "corpus"), **TINY_RUN}))
    res = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run", "--grid", value)
    assert res.returncode == 2 and message in res.stderr
    res = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run", value)
    assert res.returncode == 2 and message in res.stderr


def test_alignment_stages_measure_every_pretrained_model_where_truth_exists(demo_folds, tmp_path):
    config, corpus = tmp_path / "e.yaml", demo_folds.parent / "corpus"
    config.write_text(yaml.safe_dump({"corpus": str(corpus), "segments": str(corpus / DEMO_SEGMENTS_FILE), **TINY_RUN, "alignment": None}))
    res = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run", "--grid", "cpt_targets=clusters,tapt")
    assert res.returncode == 0, res.stderr[-3000:]
    keys = re.findall(r"^# (fold1/alignment/\S+)", res.stdout, flags=re.M)
    assert keys == ["fold1/alignment/cpt-L1-K6", "fold1/alignment/tapt-L1-K6", "fold1/alignment/cpt-tapt-units-L1-K6"]  # bootstrap: no source
    line = next(line for line in res.stdout.splitlines() if "alignment/tapt-L1-K6 " in line or line.endswith("alignment/tapt-L1-K6 --device cpu"))
    assert (
        f"fesa -q alignment {tmp_path / 'exp' / 'fold1' / 'tapt' / 'checkpoints' / 'checkpoint_best.pt'}" in line and "--layer 1 --clusters 6" in line
    )
    assert f"--reference {corpus / DEMO_SEGMENTS_FILE}" in line
    for no in ({"alignment": False, "segments": str(corpus / DEMO_SEGMENTS_FILE)}, {"alignment": None}):  # the demo corpus itself is no truth
        config.write_text(yaml.safe_dump({"corpus": str(corpus), **TINY_RUN, **no}))
        res = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run")
        assert res.returncode == 0 and "fesa -q alignment" not in res.stdout
