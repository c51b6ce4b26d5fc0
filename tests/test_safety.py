"""What a hostile or unlucky user meets: crafted pickles, line breaks in SLURM values, folders that are not ours,
manifests replaced half-way, a second fesa run on one folder, OS errors: each a one-line error, nothing lost."""

import json
import os
import pickle
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import fesa.corpora.iemocap as iemocap
from fesa.corpora.demo import make_demo_corpus
from fesa.corpora.iemocap import prepare_iemocap
from fesa.errors import FesaError
from fesa.labels.kmeans_io import load_kmeans
from fesa.pipeline.lock import exclusive

from tiny_hubert import run_fesa


class _WritesAFile:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def one_line_error(res, needle: str, code: int = 2) -> None:
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and needle in res.stderr, res.stderr[-2000:]


def test_a_crafted_kmeans_file_runs_no_code(tmp_path, stock_labels):
    bad, witness = tmp_path / "km500.bin", tmp_path / "pwned"
    bad.write_bytes(pickle.dumps(_WritesAFile(str(witness))))
    with pytest.raises(FesaError, match=r"would build posix.system, which is not part of a scikit-learn k-means model"):
        load_kmeans(str(bad))
    assert not witness.exists()
    assert load_kmeans(str(stock_labels / "kmeans.bin")).cluster_centers_.shape == (8, 64)  # ours still loads
    (tmp_path / "text.bin").write_text("not a pickle")
    with pytest.raises(FesaError, match="is not a k-means model saved with joblib"):
        load_kmeans(str(tmp_path / "text.bin"))


def test_kmeans_model_option_refuses_a_crafted_file(stock_hubert, demo_folds, tmp_path):
    bad, witness = tmp_path / "km.bin", tmp_path / "pwned"
    bad.write_bytes(pickle.dumps(_WritesAFile(str(witness))))
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        demo_folds / "fold1",
        "--splits",
        "valid",
        "--checkpoint",
        stock_hubert,
        "--layer",
        "1",
        "--kmeans-model",
        bad,
        "--out",
        tmp_path / "out",
    )
    one_line_error(res, "refusing to load it")
    assert not witness.exists()


@pytest.fixture
def tiny_experiment(demo_folds, tmp_path):
    cfg = {
        "corpus": str(demo_folds.parent / "corpus"),
        "source_checkpoint": "bootstrap",
        "folds": [1],
        "cpt_init": "tapt",
        "configs": {"tapt": "tiny", "finetune": "tiny", "cpt": "tiny"},
        "emotion_labels": {"layer": 2},
        "device": "cpu",
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def test_slurm_values_are_quoted_and_line_breaks_refused(tiny_experiment, tmp_path):
    path, cfg = tiny_experiment
    witness = tmp_path / "pwned"
    cfg["slurm"] = {"partition": f"gpu$(touch {witness})", "setup": ["echo setup"]}
    cfg["overrides"] = {"tapt": [f"common.seed=$(touch {witness})"]}
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "exp"
    res = run_fesa("run", path, "--exp-dir", out, "--slurm", "--dry-run")
    assert res.returncode == 0, res.stderr[-3000:]
    script = (out / "slurm" / "fold1__tapt.sbatch").read_text()
    assert f"#SBATCH '--partition=gpu$(touch {witness})'" in script
    fesa = str(Path(sys.executable).parent / "fesa")  # the jobs run the fesa that submitted them, by its path
    job = shlex.split(script.splitlines()[-1])
    assert job[:2] == [fesa, "run"] and job[-2:] == ["--only", "fold1/tapt"]
    # Run the script with a stand-in fesa in its place: nothing in it may expand the $(...) of a value.
    stand_in = tmp_path / "bin" / "fesa"
    stand_in.parent.mkdir()
    stand_in.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n')
    stand_in.chmod(0o755)
    (tmp_path / "job.sbatch").write_text(script.replace(shlex.quote(fesa), shlex.quote(str(stand_in))))
    subprocess.run(["bash", str(tmp_path / "job.sbatch")], check=True)
    assert (stand_in.parent / "args").read_text().split()[-2:] == ["--only", "fold1/tapt"] and not witness.exists()

    for where in ({"slurm": {"partition": "gpu\nrm -rf ~"}}, {"overrides": {"cpt": ["a=1\ntouch x"]}}):
        bad = {**cfg, **where}
        path.write_text(yaml.safe_dump(bad))
        res = run_fesa("run", path, "--exp-dir", tmp_path / "exp2", "--slurm", "--dry-run")
        one_line_error(res, "holds a line break")
        assert not (tmp_path / "exp2").exists()


def test_overwrite_refuses_a_folder_that_is_not_a_demo_corpus(tmp_path):
    thesis = tmp_path / "work"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("three years")
    res = run_fesa("-q", "make-demo-corpus", thesis, "--overwrite", "--utterances-per-speaker", "3")
    one_line_error(res, "has no fesa_demo.json, so it was not written by this command")
    assert (thesis / "thesis.tex").read_text() == "three years" and len(list(thesis.iterdir())) == 1
    make_demo_corpus(tmp_path / "demo", utterances_per_speaker=3, progress=False)
    make_demo_corpus(tmp_path / "demo", utterances_per_speaker=3, seed=5, overwrite=True, progress=False)
    assert json.loads((tmp_path / "demo" / "fesa_demo.json").read_text())["seed"] == 5


def test_manifests_are_replaced_whole_or_not_at_all(demo_folds, tmp_path, monkeypatch):
    corpus, out = demo_folds.parent / "corpus", tmp_path / "m"
    prepare_iemocap(corpus, out, valid_fraction=0.2, progress=False)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(FesaError, match="already exists and is not empty: .* pass --overwrite"):
        prepare_iemocap(corpus, out, valid_fraction=0.3, progress=False)
    real, calls = iemocap.write_manifest, []

    def fails_in_fold3(path, *args):
        calls.append(path)
        if "fold3" in str(path):
            raise OSError(28, "No space left on device", str(path))
        return real(path, *args)

    monkeypatch.setattr(iemocap, "write_manifest", fails_in_fold3)
    with pytest.raises(FesaError, match=f"^{out / 'fold3' / 'train.tsv'}: No space left on device$"):  # the user's path, not the staging one
        prepare_iemocap(corpus, out, valid_fraction=0.3, overwrite=True, progress=False)
    assert any("fold2" in str(p) for p in calls)  # folds 1 and 2 were written, somewhere
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging folder left behind
    monkeypatch.setattr(iemocap, "write_manifest", real)
    prepare_iemocap(corpus, out, valid_fraction=0.3, overwrite=True, progress=False)
    assert json.loads((out / "prepare.json").read_text())["valid_fraction"] == 0.3


def test_a_second_run_on_one_folder_fails_naming_the_holder(tiny_experiment, tmp_path):
    path, _ = tiny_experiment
    exp = tmp_path / "exp"
    exp.mkdir()
    lock = exp / ".fesa-run.lock"
    with exclusive(lock, "experiment"):
        res = run_fesa("run", path, "--exp-dir", exp, "--stages", "prepare")
        one_line_error(res, f"is in use by pid {os.getpid()} on {socket.gethostname()}")
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "since": "then", "command": "fesa run"}))
    res = run_fesa("run", path, "--exp-dir", exp, "--stages", "prepare")  # the holder is gone: taken over
    assert res.returncode == 0, res.stderr[-3000:]
    assert "taking over the lock" in res.stderr and not lock.exists()


def test_user_errors_are_one_line(tmp_path, demo_folds, finetuned_classifier):
    (tmp_path / "text.pt").write_text("hello")
    one_line_error(
        run_fesa("-q", "evaluate", tmp_path / "text.pt", demo_folds / "fold1", "--out", tmp_path / "o"), "not a PyTorch checkpoint, or damaged"
    )
    (tmp_path / "broken.yaml").write_text("corpus: [a\n")
    one_line_error(run_fesa("run", tmp_path / "broken.yaml"), "cannot read experiment config")
    (tmp_path / "afile").write_text("")
    one_line_error(run_fesa("-q", "acoustic-baseline", demo_folds / "fold1", "--out", tmp_path / "afile" / "sub"), str(tmp_path / "afile"))
    zero = tmp_path / "fold"
    zero.mkdir()
    (zero / "dict.emo.txt").write_text((demo_folds / "fold1" / "dict.emo.txt").read_text())
    (tmp_path / "zero.wav").write_bytes(b"")
    (zero / "test.tsv").write_text(f"{tmp_path}\nzero.wav\t16000\n")
    (zero / "test.emo").write_text("neu\n")
    checkpoint = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    res = run_fesa("-q", "evaluate", checkpoint, zero, "--out", tmp_path / "o2")
    one_line_error(res, f"{zero / 'test.tsv'}:2: cannot read wav {tmp_path / 'zero.wav'}")
    res = run_fesa("-q", "--debug", "evaluate", checkpoint, zero, "--out", tmp_path / "o2")
    assert res.returncode == 2 and "Traceback" in res.stderr  # --debug shows where
    assert not (tmp_path / "o2").exists()
