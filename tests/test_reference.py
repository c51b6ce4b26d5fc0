"""fesa reference: the acoustic reference scored like every model, fitted without the test split."""

import json
import shutil

import numpy as np
import pytest

from fesa.errors import FesaError
from fesa.pipeline.reference import C_GRID, reference, utterance_statistics

from tiny_hubert import run_fesa


def test_statistics_of_an_utterance():
    mfcc = np.arange(30, dtype=np.float32).reshape(10, 3)
    stats = utterance_statistics(mfcc, 2.0)
    assert stats.shape == (4 * 3 + 1,)
    np.testing.assert_allclose(stats[:3], mfcc.mean(0))
    np.testing.assert_allclose(stats[3:6], mfcc.std(0))
    np.testing.assert_allclose(stats[6:9], np.percentile(mfcc, 10, axis=0))
    assert stats[-1] == pytest.approx(np.log(2.0))


def test_cli_writes_what_evaluate_writes(demo_folds, tmp_path):
    out = tmp_path / "ref"
    res = run_fesa("-q", "acoustic-baseline", demo_folds / "fold1", "--out", out, "--cell", '{"stage":"reference","fold":1,"model":"reference"}')
    assert res.returncode == 0, res.stderr[-3000:]
    assert "acoustic reference" in res.stdout and "UA " in res.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cell"] == {
        **{k: None for k in ("layer", "clusters", "targets", "pooling", "seed")},
        "stage": "reference",
        "fold": 1,
        "model": "reference",
    }
    rows = (out / "predictions.tsv").read_text().splitlines()
    test_size = len((demo_folds / "fold1" / "test.emo").read_text().splitlines())
    assert len(rows) == 1 + test_size == 1 + metrics["utterances"] and (out / "confusion.png").is_file()
    assert metrics["C"] in C_GRID and set(metrics["valid_ua_per_C"]) == {str(c) for c in C_GRID}
    # The metrics are those of the written predictions.
    labels = metrics["labels"]
    hits = {label: [0, 0] for label in labels}
    for row in rows[1:]:
        _, truth, pred, *_ = row.split("\t")
        hits[truth][0] += truth == pred
        hits[truth][1] += 1
    ua = 100 * np.mean([c / t for c, t in hits.values() if t])
    assert metrics["ua"] == pytest.approx(ua, abs=0.01)


@pytest.mark.parametrize(
    "cell, message",
    [
        ('{"stage":"evaluate","colour":"red"}', "a cell has no field 'colour'"),
        ('{"stage":"evaluate","layer":"9"}', "the cell's layer is '9', not a whole number"),
        ('{"fold":1}', "a cell is a json object with a 'stage'"),
        ("{stage: evaluate}", "--cell takes a json object"),
    ],
)
def test_a_bad_cell_is_refused_before_anything_runs(demo_folds, tmp_path, cell, message):
    res = run_fesa("-q", "acoustic-baseline", demo_folds / "fold1", "--out", tmp_path / "ref", "--cell", cell)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "ref").exists()


def test_the_test_split_changes_nothing_but_its_own_scores(demo_folds, tmp_path):
    """Model selection and fitting use train and valid only: shuffling test labels leaves predictions alone."""
    fold = tmp_path / "fold"
    shutil.copytree(demo_folds / "fold1", fold)
    first = reference(str(fold), str(tmp_path / "a"), progress=False)
    labels = (fold / "test.emo").read_text().splitlines()
    (fold / "test.emo").write_text("\n".join(reversed(labels)) + "\n")
    second = reference(str(fold), str(tmp_path / "b"), progress=False)
    assert first["C"] == second["C"] and first["valid_ua_per_C"] == second["valid_ua_per_C"]
    column = lambda out: [r.split("\t")[2] for r in (tmp_path / out / "predictions.tsv").read_text().splitlines()[1:]]  # noqa: E731
    assert column("a") == column("b")


def test_a_class_missing_from_train_is_a_clear_error(demo_folds, tmp_path):
    fold = tmp_path / "fold"
    shutil.copytree(demo_folds / "fold1", fold)
    labels = (fold / "train.emo").read_text().splitlines()
    (fold / "train.emo").write_text("\n".join("neu" if label == "sad" else label for label in labels) + "\n")
    with pytest.raises(FesaError, match=r"train.emo has no utterance of sad"):
        reference(str(fold), str(tmp_path / "out"), progress=False)


def test_the_old_name_still_works_for_one_release_and_says_so(demo_folds, tmp_path):
    res = run_fesa("-q", "reference", demo_folds / "fold1", "--out", tmp_path / "old")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "fesa reference is now fesa acoustic-baseline" in res.stderr and "acoustic reference" in res.stdout
    assert json.loads((tmp_path / "old" / "metrics.json").read_text())["ua"] >= 0
