"""A second adversarial pass: nothing a user wrote is lost, no result is silently wrong, and each mistake is one line.

Every case asserts the exit code, the message, and what is (and is not) on disk afterwards. Commands run in-process
(``fesa_main``) where they need no trained model, so the cases stay cheap.
"""

import json
import os
import shutil
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from fesa.corpora.demo import make_demo_corpus
from fesa.corpora.iemocap import prepare_iemocap
from fesa.errors import FesaError
from fesa.files import atomic_write_text
from fesa.inference.eder import eder
from fesa.inference.predict import utterance_ids
from fesa.labels.kmeans_backends import model_of_centroids
from fesa.labels.kmeans_io import load_kmeans
from fesa.pipeline.experiment import experiment_yaml, load_experiment
from fesa.pipeline.plan import Plan
from fesa.pipeline.slurm import check_job_command
from fesa_fairseq.data.audio import AudioSource
from fesa_fairseq.errors import InputError

from cli_helpers import fesa_main, one_line_error, snapshot
from tiny_hubert import TINY_RUN


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small demo corpus of this module's own (tests here move and damage copies of it, never a shared one)."""
    root = tmp_path_factory.mktemp("corpus") / "corpus"
    make_demo_corpus(root, utterances_per_speaker=5, seed=3, progress=False)
    return root


@pytest.fixture
def checkpoint(finetuned_classifier) -> Path:
    return finetuned_classifier / "checkpoints" / "checkpoint_best.pt"


@pytest.fixture
def test_wavs(demo_folds) -> list:
    root, *rows = (demo_folds / "fold1" / "test.tsv").read_text().splitlines()
    return [Path(root) / r.split("\t")[0] for r in rows[:3]]


# 1. --overwrite replaces only what this project wrote, and never the command's own input.


def test_prepare_overwrite_refuses_the_folder_that_holds_the_corpus(corpus, tmp_path, capsys):
    home = tmp_path / "home"
    shutil.copytree(corpus, home / "IEMOCAP")
    (home / "notes.txt").write_text("mine")
    before = snapshot(home)
    res = fesa_main(capsys, "-q", "prepare-iemocap", home / "IEMOCAP", home, "--overwrite")
    one_line_error(res, f"{home} holds this command's own input {home / 'IEMOCAP'}")
    assert snapshot(home) == before


@pytest.mark.parametrize("where", ["inside", "itself"])
def test_prepare_overwrite_never_replaces_a_manifest_folder_holding_its_input(corpus, tmp_path, capsys, where):
    manifests = tmp_path / "manifests"
    prepare_iemocap(corpus, manifests, valid_fraction=0.2, check_totals=False, progress=False)
    source = manifests / "IEMOCAP" if where == "inside" else manifests
    shutil.copytree(corpus, source, dirs_exist_ok=True)
    before = snapshot(manifests)
    res = fesa_main(capsys, "-q", "prepare-iemocap", source, manifests, "--overwrite")
    one_line_error(res, f"{manifests} holds this command's own input" if where == "inside" else f"{manifests} is this command's own input")
    assert snapshot(manifests) == before


@pytest.mark.parametrize("command", ["make-demo-corpus", "make-pretraining-corpus"])
def test_generators_overwrite_only_their_own_corpus(tmp_path, capsys, command):
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("three years")
    marker = "fesa_demo.json" if command == "make-demo-corpus" else "fesa_pretraining.json"
    res = fesa_main(capsys, "-q", command, work, "--overwrite", "--utterances-per-speaker", "5")
    one_line_error(res, f"has no {marker}, so it was not written by this command")
    assert snapshot(work) == {Path("thesis.tex"): b"three years"}


def test_replaced_folders_honour_the_umask(corpus, tmp_path):
    old = os.umask(0o027)
    try:
        prepare_iemocap(corpus, tmp_path / "m", valid_fraction=0.2, check_totals=False, progress=False)
        prepare_iemocap(corpus, tmp_path / "m", valid_fraction=0.3, check_totals=False, progress=False, overwrite=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "m" / "prepare.json").stat().st_mode) == 0o640


def test_errors_name_the_users_path_never_a_temporary_one(tmp_path, capsys):
    (tmp_path / "out.json").mkdir()
    with pytest.raises(FesaError, match=f"^{tmp_path / 'out.json'} is a folder"):
        atomic_write_text(tmp_path / "out.json", "{}")
    res = fesa_main(capsys, "make-demo-corpus", "")
    one_line_error(res, "an empty path")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


# 2. Unique utterance ids in fesa predict, the same in every output.


def test_utterance_ids_take_parent_folders_only_where_names_clash(tmp_path):
    paths = [tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav", tmp_path / "c" / "x-2.wav", tmp_path / "a" / "x.flac", tmp_path / "t\tab.wav"]
    ids = utterance_ids(paths)
    assert ids[1:3] == ["b/x", "x-2"] and ids[4] == "t\\x09ab"
    assert ids[0].endswith("a/x.wav") and ids[3].endswith("a/x.flac") and len(set(ids)) == 5


def test_predict_gives_clashing_names_distinct_ids(checkpoint, test_wavs, tmp_path, capsys):
    for folder, name, wav in (("a", "x", test_wavs[0]), ("b", "x", test_wavs[1]), ("c", "x-2", test_wavs[2])):
        (tmp_path / folder).mkdir()
        shutil.copy(wav, tmp_path / folder / f"{name}.wav")
    shutil.copy(test_wavs[0], tmp_path / "a" / "tab\there.wav")
    out = tmp_path / "out"
    inputs = [tmp_path / "a" / "x.wav", tmp_path / "b" / "x.wav", tmp_path / "c" / "x-2.wav", tmp_path / "a" / "tab\there.wav"]
    res = fesa_main(capsys, "-q", "predict", checkpoint, *inputs, inputs[0], "--out", out, "--frames", "--device", "cpu")
    assert res.returncode == 0, res.stderr
    rows = (out / "utterances.tsv").read_text().splitlines()
    ids = ["a/x", "b/x", "x-2", "tab\\x09here"]
    assert [r.split("\t")[0] for r in rows[1:]] == ids and all(len(r.split("\t")) == 8 for r in rows)
    assert list(json.loads((out / "segments.json").read_text())) == ids
    assert sorted(str(p.relative_to(out / "frames")) for p in (out / "frames").rglob("*.npz")) == sorted(f"{i}.npz" for i in ids)
    assert "4 files" in res.stdout and "given more than once" in res.stderr


# 3. Audio that would give a wrong answer is refused, in a batch the good files are written.


def _bad_audio(folder: Path, good: Path) -> dict:
    x, _ = sf.read(str(good), dtype="float32")
    y = x.copy()
    y[800] = np.nan
    sf.write(str(folder / "nan.wav"), y, 16000, subtype="FLOAT")
    sf.write(str(folder / "full.wav"), np.tile(x, 3), 16000, subtype="PCM_16")
    (folder / "cut.wav").write_bytes((folder / "full.wav").read_bytes()[: 44 + 2 * 1440])
    sf.write(str(folder / "full.flac"), np.tile(x, 3), 16000)
    data = (folder / "full.flac").read_bytes()
    (folder / "cut.flac").write_bytes(data[: len(data) // 3])
    return {
        "nan.wav": "holds 1 NaN or infinite sample(s), the first at 0.050 s",
        "cut.wav": f"is truncated: its header says {3 * len(x)} samples",
        "cut.flac": "cannot decode",
    }


def test_audio_checks_in_the_data_layer(test_wavs, tmp_path):
    for name, why in _bad_audio(tmp_path, test_wavs[0]).items():
        with pytest.raises(InputError, match=why.split(":")[0].replace("(", r"\(").replace(")", r"\)")):
            source = AudioSource(tmp_path / name)
            source.read(0, source.samples)


def test_predict_lists_bad_files_and_writes_the_good_ones(checkpoint, test_wavs, tmp_path, capsys):
    bad = _bad_audio(tmp_path, test_wavs[0])
    silence = tmp_path / "silence.wav"
    sf.write(str(silence), np.zeros(32000, dtype=np.float32), 16000)
    out = tmp_path / "out"
    res = fesa_main(capsys, "-q", "predict", checkpoint, test_wavs[1], *(tmp_path / n for n in bad), silence, "--out", out, "--plot", "6")
    one_line_error(res, "3 of 5 inputs could not be read")
    for name, why in bad.items():
        assert any(str(tmp_path / name) in line and why in line for line in res.stderr.splitlines()), (name, res.stderr)
    assert len((out / "utterances.tsv").read_text().splitlines()) == 3  # header, the good file, digital silence
    assert (out / "timelines" / "silence.png").is_file()


# 4. Options checked before any file is read; a bad one never replaces earlier results.


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--hop", "0", "--hop 0.0: give a number of seconds from 0.02"),
        ("--window", "0", "--window 0.0: give a number of seconds from 0.1"),
        ("--window", "-3", "--window -3.0"),
        ("--hop", "30", "--hop 30.0 s must be shorter than --window 20.0 s"),
        ("--window", "nan", "--window nan"),
        ("--hop", "inf", "--hop inf"),
        ("--window", "1e300", "--window 1e+300"),
        ("--median", "nan", "--median nan"),
        ("--min-segment", "-1", "--min-segment -1.0"),
    ],
)
def test_bad_frame_options_leave_earlier_results_alone(tmp_path, capsys, option, value, message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "utterances.tsv").write_text("utt_id\tpath\nold\tresults\n")
    (out / "segments.json").write_text('{"old": {}}\n')
    before = snapshot(out)
    res = fesa_main(capsys, "-q", "predict", tmp_path / "no.pt", tmp_path / "no.wav", "--out", out, option, value)
    one_line_error(res, message)
    assert snapshot(out) == before


def test_predict_with_no_readable_input_writes_nothing(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "utterances.tsv").write_text("earlier\n")
    (out / "segments.json").write_text("{}\n")  # what fesa predict writes last: its own earlier results
    (tmp_path / "text.wav").write_text("not audio")
    res = fesa_main(capsys, "-q", "predict", checkpoint, tmp_path / "text.wav", "--out", out)
    one_line_error(res, "none of the 1 inputs could be read")
    assert snapshot(out) == {Path("utterances.tsv"): b"earlier\n", Path("segments.json"): b"{}\n"}


@pytest.mark.parametrize("command", ["predict", "evaluate", "pseudo-labels"])
def test_a_device_torch_does_not_know_is_refused_before_anything_runs(tmp_path, capsys, command):
    args = {"predict": ["x.pt", "a.wav", "--out", tmp_path / "o"], "evaluate": ["x.pt", tmp_path, "--out", tmp_path / "o"]}
    args["pseudo-labels"] = ["--manifest-dir", tmp_path, "--out", tmp_path / "o"]
    res = fesa_main(capsys, command, *args[command], "--device", "gpu0")
    one_line_error(res, "'gpu0' is not a device: give auto (CUDA when available), cpu, cuda or cuda:N")
    assert not (tmp_path / "o").exists()


# The experiment: devices, folds and paths checked when it is loaded.


@pytest.fixture
def experiment(corpus, tmp_path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TINY_RUN, "corpus": str(corpus)}))
    return path


def test_experiment_device_and_folds_are_checked_at_load(experiment, tmp_path, capsys):
    exp = tmp_path / "e"
    res = fesa_main(capsys, "run", experiment, "--exp-dir", exp, "--dry-run", "device=gpu0")
    one_line_error(res, "'device' 'gpu0' is not a device")
    for folds, message in (("7", "got [7]"), (",", "got []"), ("1,x", "--folds takes comma-separated integers")):
        res = fesa_main(capsys, "run", experiment, "--exp-dir", exp, "--stages", "prepare", "--folds", folds)
        one_line_error(res, message)
    assert not exp.exists()  # experiment.yaml is not (re)written by a refused run


def test_any_path_reaches_hydra_whole(demo_folds, tmp_path):
    odd = tmp_path / "my data, v2; 'final' \"x\" [1]" / "manifests"
    shutil.copytree(demo_folds / "fold1", odd / "fold1")
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TINY_RUN, "manifests": str(odd)}))
    plan = Plan(load_experiment(path), tmp_path / "exp, 2", [{}])
    parser, checked = OverridesParser.create(), 0
    for stage in (s for s in plan.stages if s.training):
        values = {o.key_or_group: o.value() for o in parser.parse_overrides([a for a in stage.command[5:]])}
        assert values["task.data"] == str(odd / "fold1") and values["hydra.run.dir"] == str(stage.out_dir)
        checked += 1
    assert checked == 4
    with pytest.raises(FesaError, match=r"--exp-dir .*a\$\{b\} holds '\$\{', which hydra reads as an interpolation"):
        Plan(load_experiment(path), tmp_path / "a${b}", [{}])


def test_a_yaml_anchor_loop_is_one_line(tmp_path, capsys):
    (tmp_path / "loop.yaml").write_text("a: &x [*x]\n")
    one_line_error(fesa_main(capsys, "run", tmp_path / "loop.yaml"), "cannot read experiment config")


def test_slurm_jobs_need_a_command_that_resolves():
    check_job_command([sys.executable, "run"], SimpleNamespace(setup=[]))
    with pytest.raises(FesaError, match="not on PATH here and slurm.setup is empty"):
        check_job_command(["fesa-not-installed", "run"], SimpleNamespace(setup=[]))
    check_job_command(["fesa-not-installed", "run"], SimpleNamespace(setup=["source /opt/venv/bin/activate"]))


def test_status_reads_a_run_whose_inputs_moved_and_names_damaged_files(demo_folds, tmp_path, capsys):
    manifests = tmp_path / "manifests"
    shutil.copytree(demo_folds, manifests)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TINY_RUN, "manifests": str(manifests)}))
    exp = tmp_path / "exp"
    (exp / "fold1" / "tapt-labels").mkdir(parents=True)
    (exp / "experiment.yaml").write_text(experiment_yaml(load_experiment(path)))
    (exp / "fold1" / "tapt-labels" / ".fesa-stage.json").write_bytes(b"\x00garbage")
    shutil.move(manifests, tmp_path / "moved")
    res = fesa_main(capsys, "status", exp)
    assert res.returncode == 0, res.stderr
    assert f"its stamp {exp / 'fold1' / 'tapt-labels' / '.fesa-stage.json'} is damaged" in res.stdout
    (exp / "slurm").mkdir()
    (exp / "slurm" / "jobs.json").write_text("{not json")
    res = fesa_main(capsys, "status", exp)
    row = next(line for line in res.stdout.splitlines() if line.startswith("slurm/jobs.json"))
    assert res.returncode == 0 and row.split()[1] == "damaged" and f"{exp / 'slurm' / 'jobs.json'} is damaged" in row


# 5. EDER and segment files.


def _segments(*events, duration=2.0) -> dict:
    return {"u": {"wav": "", "duration": duration, "emotion": [{"emo": e, "start": a, "end": b} for a, b, e in events]}}


def test_eder_does_not_depend_on_the_order_of_a_file():
    ref = _segments((0.5, 1.0, "ang"), (1.2, 1.8, "hap"))
    hyp = _segments((1.8, 2.0, "neu"), (1.2, 1.8, "hap"), (0.0, 0.5, "neu"), (1.0, 1.2, "neu"), (0.5, 1.0, "ang"))
    assert eder(ref, hyp)["eder"] == 0.0


@pytest.mark.parametrize(
    "entry,message",
    [
        (_segments((-0.5, 1.0, "ang")), "must have 0 <= start < end <= duration"),
        (_segments((0.5, 2.5, "ang")), "must have 0 <= start < end <= duration (2.0 s)"),
        (_segments((1.0, 1.0, "ang")), "must have 0 <= start < end"),
        (_segments((0.2, 1.0, "ang"), (0.8, 1.5, "sad")), "reference events overlap"),
        ({}, "with at least one utterance"),
        ({"u": {"duration": None, "emotion": []}}, "'duration' is None"),
        ({"u": {"duration": 2.0, "emotion": [{"emo": "ang", "start": "0.1", "end": 1.0}]}}, "'start' is '0.1'"),
        ({"u": {"duration": float("inf"), "emotion": []}}, "'duration' is inf"),
    ],
)
def test_eder_refuses_impossible_segments(tmp_path, capsys, entry, message):
    (tmp_path / "ref.json").write_text(json.dumps(entry))
    (tmp_path / "hyp.json").write_text(json.dumps(_segments((0.0, 2.0, "neu"))))
    res = fesa_main(capsys, "eder", "--reference", tmp_path / "ref.json", "--hypothesis", tmp_path / "hyp.json", "--out", tmp_path / "m.json")
    one_line_error(res, message)
    assert not (tmp_path / "m.json").exists()


def test_first_letter_reaches_the_confusion_table_and_json_is_standard(tmp_path, capsys):
    (tmp_path / "ref.json").write_text(json.dumps(_segments((0.5, 1.5, "angry"))))
    (tmp_path / "hyp.json").write_text(json.dumps(_segments((0.0, 0.5, "n"), (0.5, 2.0, "a"))))
    res = fesa_main(capsys, "eder", "--reference", tmp_path / "ref.json", "--hypothesis", tmp_path / "hyp.json", "--first-letter", "--neutral", "n")
    assert res.returncode == 0 and "EDER 25.00%" in res.stdout
    header = next(line for line in res.stdout.splitlines() if line.startswith("true\\pred")).split()
    assert header == ["true\\pred", "a", "n", "correct"]
    (tmp_path / "bad.json").write_bytes(b'{"u": "caf\xe9"}')
    one_line_error(fesa_main(capsys, "eder", "--reference", tmp_path / "bad.json", "--hypothesis", tmp_path / "hyp.json"), "is not UTF-8 text")


def test_convert_segments_needs_real_durations(corpus, tmp_path, capsys):
    plain = tmp_path / "plain.tsv"
    utt = next(corpus.rglob("*.wav")).stem
    plain.write_text(f"{utt}\t0.1\t0.5\tang\n")
    out = tmp_path / "ref.json"
    one_line_error(fesa_main(capsys, "convert-segments", plain, "--out", out, "--audio-root", tmp_path / "nowhere"), "is not a folder")
    plain.write_text("other\t0.1\t0.5\tang\n")
    one_line_error(fesa_main(capsys, "convert-segments", plain, "--out", out, "--audio-root", corpus), "has no wav named other.wav")
    plain.write_text(f"{utt}\t0.1\tinf\tang\n")
    one_line_error(fesa_main(capsys, "convert-segments", plain, "--out", out), "times must be finite")
    assert not out.exists()
    plain.write_text(f"{utt}\t0.1\t0.5\tang\n")
    assert fesa_main(capsys, "convert-segments", plain, "--out", out, "--audio-root", corpus).returncode == 0
    assert json.loads(out.read_text())[utt]["duration"] == pytest.approx(sf.info(str(next(corpus.rglob(f"{utt}.wav")))).duration, abs=1e-3)
    (tmp_path / "latin1.tsv").write_bytes(b"caf\xe9\t0.1\t0.5\tang\n")
    one_line_error(fesa_main(capsys, "convert-segments", tmp_path / "latin1.tsv", "--out", out), "is not UTF-8 text")


# 6. Untrusted files.


def test_kmeans_files_with_object_arrays_are_refused(tmp_path):
    model = model_of_centroids(np.random.default_rng(0).normal(size=(5, 3)))
    joblib.dump(model, tmp_path / "ok.bin")
    assert load_kmeans(str(tmp_path / "ok.bin")).cluster_centers_.shape == (5, 3)
    model.extra = np.array([{"any": "object"}], dtype=object)
    joblib.dump(model, tmp_path / "objects.bin")
    with pytest.raises(FesaError, match="holds an array of Python objects"):
        load_kmeans(str(tmp_path / "objects.bin"))


def _valid_labels(demo_folds: Path, checkpoint: Path) -> list:
    """fesa pseudo-labels of fold 1's valid split, layer 1 (what the two tests below vary is the k-means model)."""
    return ["-q", "pseudo-labels", "--manifest-dir", demo_folds / "fold1", "--splits", "valid", "--checkpoint", checkpoint, "--layer", "1"]


def test_a_bad_kmeans_file_is_refused_before_features_are_dumped(stock_hubert, demo_folds, tmp_path, capsys):
    (tmp_path / "km.bin").write_text("not a pickle")
    out = tmp_path / "out"
    res = fesa_main(capsys, *_valid_labels(demo_folds, stock_hubert), "--kmeans-model", tmp_path / "km.bin", "--out", out, "--device", "cpu")
    one_line_error(res, "is not a k-means model saved with joblib")
    assert not out.exists()


def test_applied_kmeans_is_rewritten_from_the_centroids_read(stock_labels, stock_hubert, demo_folds, tmp_path, capsys):
    user = tmp_path / "user_km.bin"
    shutil.copy(stock_labels / "kmeans.bin", user)
    out = tmp_path / "out"
    res = fesa_main(capsys, *_valid_labels(demo_folds, stock_hubert), "--kmeans-model", user, "--out", out, "--device", "cpu")
    assert res.returncode == 0, res.stderr
    theirs, ours = load_kmeans(str(user)).cluster_centers_, load_kmeans(str(out / "kmeans.bin")).cluster_centers_
    assert np.array_equal(theirs, ours) and (out / "kmeans.bin").read_bytes() != user.read_bytes()
    assert (out / "valid.km").read_text() == (stock_labels / "valid.km").read_text()


@pytest.mark.parametrize("command", ["predict", "evaluate", "export", "run"])
def test_random_bytes_are_not_a_checkpoint(demo_folds, corpus, tmp_path, capsys, command):
    bad = tmp_path / "random.pt"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    args = {
        "predict": [bad, next(corpus.rglob("*.wav")), "--out", tmp_path / "o"],
        "evaluate": [bad, demo_folds / "fold1", "--out", tmp_path / "o"],
        "export": [bad, "--onnx", tmp_path / "o.onnx"],
    }
    if command == "run":
        (tmp_path / "e.yaml").write_text(yaml.safe_dump({**TINY_RUN, "corpus": str(corpus), "source_checkpoint": str(bad), "cpt_init": "source"}))
        args["run"] = [tmp_path / "e.yaml", "--exp-dir", tmp_path / "o", "--dry-run"]
    one_line_error(fesa_main(capsys, "-q", command, *args[command]), f"cannot read checkpoint {bad}: not a PyTorch checkpoint, or damaged")
    assert not (tmp_path / "o").exists()


def test_a_classifier_whose_head_and_classes_disagree(checkpoint, test_wavs, tmp_path, capsys):
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state["task_state"]["labels"] = state["task_state"]["labels"][:3]
    torch.save(state, tmp_path / "edited.pt")
    res = fesa_main(capsys, "-q", "predict", tmp_path / "edited.pt", test_wavs[0], "--out", tmp_path / "o")
    one_line_error(res, "its output layer has 4 outputs but it lists 3 classes")
    assert not (tmp_path / "o").exists()


def test_a_manifest_that_is_not_utf8(tmp_path, capsys):
    (tmp_path / "list.tsv").write_bytes(b"/data/caf\xe9\nx.wav\t16000\n")
    res = fesa_main(capsys, "-q", "predict", tmp_path / "no.pt", tmp_path / "list.tsv", "--out", tmp_path / "o")
    one_line_error(res, f"manifest {tmp_path / 'list.tsv'} is not UTF-8 text (byte 9)")
    assert not (tmp_path / "o").exists()
