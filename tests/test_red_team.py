"""The third adversarial pass, where no trained model is needed: every case asserts the exit code, the one-line
message and what is (and is not) on disk afterwards."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fesa.cli import APART, build_parser
from fesa.corpora.demo import DEMO_SEGMENTS_FILE
from fesa.errors import FesaError
from fesa.files import STAGE_STAMP
from fesa.labels.kmeans_backends import fit_kmeans_model
from fesa.options import ALIGNMENT_FILE, ANALYSIS_FILE, LABELS_INFO, METRICS_FILE, SEGMENTS_FILE

from cli_helpers import fesa_main, one_line_error, snapshot
from emobox_fixture import write_audio
from tiny_hubert import TINY_RUN, run_fesa

# 1. Outputs never replace inputs: each command that writes, given an output that is, holds or lies inside an input.


def _inputs(root: Path) -> dict:
    """Files a command might read; their bytes are random, as nothing may be read before the refusal."""
    files = {}
    for rel in ("fold/train.tsv", "fold/dict.emo.txt", "ckpt/model.pt", "snap/model.safetensors", "snap/config.json", "audio/a.wav"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode() * 3)
        files[rel] = root / rel
    (root / "table.csv").write_text("path,emotion\naudio/a.wav,ang\n")
    (root / "segments.json").write_text("{}")
    return files


CASES = {
    "prepare-iemocap": lambda r: (["prepare-iemocap", r / "fold", r / "fold", "--overwrite"], "is this command's own input"),
    "prepare-emobox": lambda r: (["prepare-emobox", r / "fold", r, "--audio-root", r / "audio"], "holds this command's own input"),
    "prepare-table": lambda r: (["prepare-table", r / "table.csv", r / "out", "--audio-root", r], "lies inside this command's input"),
    "convert-segments": lambda r: (["convert-segments", r / "segments.json", "--out", r / "segments.json"], "is this command's own input"),
    "pseudo-labels": lambda r: (["pseudo-labels", "--manifest-dir", r / "fold", "--out", r / "fold" / "km"], "lies inside"),
    "control-labels": lambda r: (["control-labels", r / "fold", "--kind", "utterance", "--manifest-dir", r / "fold", "--out", r], "holds"),
    "analyze-clusters": lambda r: (
        ["analyze-clusters", "--manifest-dir", r / "fold", "--checkpoint", r / "ckpt/model.pt", "--out", r / "ckpt"],
        "holds",
    ),
    "alignment": lambda r: (
        ["alignment", r / "ckpt/model.pt", r / "fold", "--layer", "1", "--reference", r / "segments.json", "--out", r / "fold"],
        "is this command's own input",
    ),
    "evaluate": lambda r: (["evaluate", r / "ckpt/model.pt", r / "fold", "--out", r, "--map", "a=ang"], f"{r} holds this command's own input"),
    "acoustic-baseline": lambda r: (["acoustic-baseline", r / "fold", "--out", r / "fold" / "ref"], "lies inside"),
    "eder": lambda r: (
        ["eder", "--reference", r / "segments.json", "--hypothesis", r / "fold/train.tsv", "--out", r / "fold/train.tsv"],
        "own input",
    ),
    "predict": lambda r: (["predict", r / "ckpt/model.pt", r / "audio/a.wav", "--out", r / "audio"], "holds this command's own input"),
    "export": lambda r: (["export", r / "ckpt/model.pt", "--onnx", r / "ckpt/model.pt"], "is this command's own input"),
    "import-hf": lambda r: (["import-hf", r / "snap", "--out", r / "snap/model.safetensors", "--overwrite"], "lies inside this command's input"),
    "pool-audio": lambda r: (["pool-audio", r, "--folds", "1", "--out", r / "fold" / "all"], "lies inside this command's input"),
}


@pytest.mark.parametrize("command", sorted(CASES))
def test_an_output_that_is_holds_or_lies_inside_an_input_is_refused(tmp_path, capsys, command):
    _inputs(tmp_path)
    args, message = CASES[command](tmp_path)
    before = snapshot(tmp_path)
    one_line_error(fesa_main(capsys, "-q", *args), message)
    assert snapshot(tmp_path) == before


def test_every_command_that_writes_declares_what_it_reads():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    writers = {name for name, p in sub.choices.items() if {a.dest for a in p._actions} & {"out", "out_dir", "onnx", "hf"}}
    assert writers - {"make-demo-corpus", "make-pretraining-corpus"} == set(APART)  # the generators read nothing
    assert set(CASES) == set(APART) - {"reference"}  # "reference": acoustic-baseline's old name, the same parser


# 6. The experiment's corpus keys are parsed strictly.


def _experiment(tmp_path: Path, corpus: object) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TINY_RUN, "corpus": corpus}))
    return path


@pytest.mark.parametrize(
    "corpus,overrides,message",
    [
        ({"format": "emobox", "drop_unmapped": "false"}, [], "'corpus'.drop_unmapped is 'false'; give true or false, unquoted"),
        ({"format": "table"}, ["corpus.n_folds=abc"], "'corpus'.n_folds is 'abc'; give a whole number"),
        ({"format": "table", "n_folds": 1}, [], "'corpus'.n_folds is 1; give 2 or more"),
        ({"format": "table", "group": 3}, [], "'corpus'.group is 3; give a string"),
    ],
)
def test_corpus_keys_have_their_types(tmp_path, capsys, corpus, overrides, message):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "table.csv").write_text("path,emotion,session\na.wav,ang,1\n")
    path = _experiment(tmp_path, {"path": str(tmp_path / "c" / "table.csv"), "audio_root": str(tmp_path / "c"), **corpus})
    one_line_error(fesa_main(capsys, "run", path, "--exp-dir", tmp_path / "e", "--dry-run", *overrides), message)
    assert not (tmp_path / "e").exists()


def test_a_fold_numbered_0_is_refused_not_planned_as_the_shared_stages(tmp_path, capsys):
    for k in (0, 1):
        (tmp_path / "emobox" / f"fold_{k}").mkdir(parents=True)
    path = _experiment(tmp_path, {"format": "emobox", "path": str(tmp_path / "emobox"), "audio_root": str(tmp_path)})
    one_line_error(fesa_main(capsys, "run", path, "--exp-dir", tmp_path / "e", "--dry-run"), "fold_0: folds are numbered from 1 (EmoBox")
    assert not (tmp_path / "e").exists()


def _fold(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "dict.emo.txt").write_text("angry 2\nsad 1\n")
    (folder / "test.tsv").write_text(f"{folder}\na.wav\t16000\nb.wav\t16000\nc.wav\t16000\n")
    (folder / "test.emo").write_text("angry\nsad\nangry\n")
    return folder


@pytest.mark.parametrize(
    "mapping,message",
    [
        ("angry=ang,angry=sad", "--map gives angry more than once: map each label to one class"),
        ("angyr=ang,sad=sad", "--map names angyr, which"),
    ],
)
def test_map_takes_each_label_of_the_corpus_once(tmp_path, capsys, mapping, message):
    fold = _fold(tmp_path / "fold")
    (tmp_path / "model.pt").write_bytes(b"not read")
    res = fesa_main(capsys, "-q", "evaluate", tmp_path / "model.pt", fold, "--out", tmp_path / "out", "--map", mapping)
    one_line_error(res, message)
    assert not (tmp_path / "out").exists()


# Control labels from damaged or unusable frame labels.


def _labels(tmp_path: Path, utterances: int = 3) -> tuple:
    fold, labels = tmp_path / "fold", tmp_path / "labels"
    fold.mkdir(parents=True)
    labels.mkdir()
    (fold / "dict.emo.txt").write_text("ang 1\nsad 1\n")
    for split in ("train", "valid"):
        (fold / f"{split}.tsv").write_text(str(tmp_path) + "".join(f"\n{split}{i}.wav\t16000" for i in range(utterances)) + "\n")
        (fold / f"{split}.emo").write_text("\n".join(["ang", "sad", "ang"][:utterances]) + "\n")
        (labels / f"{split}.km").write_text(" ".join(["1"] * 50) + "\n" + (" ".join(["0"] * 50) + "\n") * (utterances - 1))
    (labels / "dict.km.txt").write_text("0 1\n1 1\n")
    (labels / "labels.json").write_text('{"label_rate": 50}')
    return fold, labels


@pytest.mark.parametrize(
    "damage,kind,message",
    [
        (lambda f, lab: (lab / "labels.json").write_text('{"label_rate": '), "utterance", "labels.json is not valid JSON"),
        (lambda f, lab: (lab / "labels.json").write_text('{"label_rate": "fast"}'), "utterance", "labels.json is damaged"),
        (lambda f, lab: (lab / "labels.json").write_text("[50]"), "shuffled", "labels.json is damaged"),
        (
            lambda f, lab: (lab / "train.km").write_text(" ".join(["1"] * 49 + ["x"]) + "\n" + "0 " * 50 + "\n" + "0 " * 50 + "\n"),
            "utterance",
            "train.km:1 holds 'x'",
        ),
        (
            lambda f, lab: (lab / "valid.km").write_text(" ".join(["7"] * 50) + "\n" + "0 " * 50 + "\n" + "0 " * 50 + "\n"),
            "shuffled",
            "valid.km:1 holds '7'",
        ),
    ],
)
def test_control_labels_refuse_damaged_frame_labels(tmp_path, capsys, damage, kind, message):
    fold, labels = _labels(tmp_path)
    damage(fold, labels)
    res = fesa_main(capsys, "-q", "control-labels", labels, "--kind", kind, "--manifest-dir", fold, "--out", tmp_path / "out")
    one_line_error(res, message)
    assert not (tmp_path / "out").exists()


def test_shuffling_needs_two_utterances(tmp_path, capsys):
    fold, labels = _labels(tmp_path, utterances=1)
    res = fesa_main(capsys, "-q", "control-labels", labels, "--kind", "shuffled", "--manifest-dir", fold, "--out", tmp_path / "out")
    one_line_error(res, "train.km has 1 line(s): shuffling needs two utterances or more in a split")
    assert not (tmp_path / "out").exists()
    fold, labels = _labels(tmp_path / "two", utterances=2)
    res = fesa_main(capsys, "-q", "control-labels", labels, "--kind", "shuffled", "--manifest-dir", fold, "--out", tmp_path / "out")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out" / "train.km").read_text().splitlines() == (labels / "train.km").read_text().splitlines()[::-1]


# fesa alignment: options checked before the model is loaded, K against the frames k-means is fitted on.


@pytest.mark.parametrize(
    "option,value,message",
    [("--clusters", "1", "--clusters is 1; k-means needs K >= 2"), ("--max-utterances", "0", "--max-utterances is 0; give 1 or more")],
)
def test_alignment_options_are_checked_before_the_model_is_read(demo_folds, tmp_path, capsys, option, value, message):
    (tmp_path / "model.pt").write_bytes(b"not read")
    reference = demo_folds.parent / "corpus" / DEMO_SEGMENTS_FILE
    args = ("alignment", tmp_path / "model.pt", demo_folds / "fold1", "--layer", "1", "--reference", reference, "--out", tmp_path / "o")
    res = fesa_main(capsys, "-q", *args, option, value)
    one_line_error(res, message)
    assert not (tmp_path / "o").exists()


def test_alignment_with_more_clusters_than_frames(stock_hubert, demo_folds, tmp_path, capsys):
    args = ["alignment", stock_hubert, demo_folds / "fold1", "--layer", "1", "--max-utterances", "1", "--clusters", "5000", "--device", "cpu"]
    args += ["--reference", demo_folds.parent / "corpus" / DEMO_SEGMENTS_FILE]
    one_line_error(fesa_main(capsys, "-q", *args, "--out", tmp_path / "o"), "k-means with K=5000 on")
    assert not (tmp_path / "o").exists()
    for backend in ("faiss", "sklearn"):
        with pytest.raises(FesaError, match="K=4 on 3 frames"):
            fit_kmeans_model(np.zeros((3, 2), dtype=np.float32), 4, backend, 0)


def test_the_acoustic_baseline_on_an_empty_split(tmp_path, capsys):
    fold = _fold(tmp_path / "fold")
    for split in ("train", "valid"):
        (fold / f"{split}.tsv").write_text((fold / "test.tsv").read_text())
        (fold / f"{split}.emo").write_text((fold / "test.emo").read_text())
    (fold / "valid.tsv").write_text(f"{fold}\n")
    (fold / "valid.emo").write_text("")
    one_line_error(fesa_main(capsys, "-q", "acoustic-baseline", fold, "--out", tmp_path / "o"), f"{fold / 'valid.tsv'} lists no utterance")
    assert not (tmp_path / "o").exists()


def test_the_grid_ends_where_the_experiment_overrides_begin(tmp_path, capsys):
    (tmp_path / "IEMOCAP").mkdir()
    path = _experiment(tmp_path, str(tmp_path / "IEMOCAP"))
    res = fesa_main(capsys, "run", path, "--exp-dir", tmp_path / "e", "--dry-run", "--grid", "cpt_targets=clusters,utterance", "seeds=[1,2]")
    assert res.returncode == 0, res.stderr[-2000:]
    for run in ("L1-K6-attention-s1", "L1-K6-attention-s2", "L1-K6-utterance-attention-s1", "L1-K6-utterance-attention-s2"):
        assert f"evaluate/{run}" in res.stdout, run
    one_line_error(fesa_main(capsys, "run", path, "--exp-dir", tmp_path / "e", "--dry-run", "--grid", "colour=red"), "--grid takes NAME=v1,v2")


# 3. Fingerprints cover the data: an edited table is prepared again.


def test_an_edited_table_is_prepared_again(tmp_path):
    lines = ["path,emotion,speaker"]
    for spk in range(3):
        for i, emotion in enumerate(("calm", "angry", "calm", "angry")):
            write_audio(tmp_path / "corpus" / f"s{spk}_{i}.wav", 0.5, 16000, 1, seed=10 * spk + i)
            lines.append(f"s{spk}_{i}.wav,{emotion},spk{spk}")
    table = tmp_path / "corpus" / "corpus.csv"
    table.write_text("\n".join(lines) + "\n")
    config = _experiment(tmp_path, {"format": "table", "path": str(table)})
    run = ["run", config, "--exp-dir", tmp_path / "exp", "--stages", "prepare", "--folds", "1"]
    assert run_fesa(*run).returncode == 0
    table.write_text(table.read_text().replace(",calm,", ",sad,"))
    res = run_fesa(*run)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "prepare: complete, skipped" not in res.stderr and "moved it to" in res.stderr
    assert set(json.loads((tmp_path / "exp" / "manifests" / "prepare.json").read_text())["classes"]) == {"angry", "sad"}


def test_an_experiment_folder_inside_the_corpus_is_refused_when_planned(tmp_path, capsys):
    (tmp_path / "corpus.csv").write_text("path,emotion,session\na.wav,ang,1\nb.wav,sad,2\n")
    (tmp_path / "cfg").mkdir()
    path = _experiment(tmp_path / "cfg", {"format": "table", "path": str(tmp_path / "corpus.csv")})
    res = fesa_main(capsys, "run", path, "--exp-dir", tmp_path / "exp", "--dry-run")
    one_line_error(
        res, f"would lie inside {tmp_path}, its audio root (corpus.audio_root; a table's own folder when not given): give --exp-dir outside it"
    )
    assert fesa_main(capsys, "run", path, "--exp-dir", tmp_path.parent / f"{tmp_path.name}-exp", "--dry-run").returncode == 0


# 7. An --out folder a command writes into in place is its own (a rerun, a stage of fesa run), empty, or --overwrite.

OWN_OUT = {
    "evaluate": (lambda r: ["evaluate", r / "ckpt/model.pt", r / "fold"], METRICS_FILE),
    "acoustic-baseline": (lambda r: ["acoustic-baseline", r / "fold"], METRICS_FILE),
    "predict": (lambda r: ["predict", r / "ckpt/model.pt", r / "audio/a.wav"], SEGMENTS_FILE),
    "pseudo-labels": (lambda r: ["pseudo-labels", "--manifest-dir", r / "fold", "--features", "mfcc", "--clusters", "2"], LABELS_INFO),
    "alignment": (lambda r: ["alignment", r / "ckpt/model.pt", r / "fold", "--layer", "1", "--reference", r / "segments.tsv"], ALIGNMENT_FILE),
    "analyze-clusters": (lambda r: ["analyze-clusters", "--manifest-dir", r / "fold", "--checkpoint", r / "ckpt/model.pt"], ANALYSIS_FILE),
}
REFUSED = "is not empty and this command did not write it"


@pytest.mark.parametrize("command", sorted(OWN_OUT))
def test_an_out_folder_of_the_users_is_refused_unless_overwrite(tmp_path, capsys, command):
    _inputs(tmp_path)
    args, marker = OWN_OUT[command][0](tmp_path), OWN_OUT[command][1]
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    before = snapshot(tmp_path)
    res = fesa_main(capsys, "-q", *args, "--out", out)
    one_line_error(res, f"fesa {command}: error: {out} {REFUSED} (it holds no {marker}): pick another folder, or pass --overwrite")
    assert len(res.stderr.splitlines()) == 1 and snapshot(tmp_path) == before
    # Past the rule, the command reads its inputs (random bytes here) and stops there, the user's file kept.
    assert REFUSED not in fesa_main(capsys, "-q", *args, "--out", out, "--overwrite").stderr
    (out / marker).write_text("{}\n")  # a rerun onto the command's own output
    assert REFUSED not in fesa_main(capsys, "-q", *args, "--out", out).stderr
    (out / marker).unlink()
    (out / STAGE_STAMP).write_text("{}\n")  # a stage folder of fesa run, resumed
    assert REFUSED not in fesa_main(capsys, "-q", *args, "--out", out).stderr
    assert (out / "notes.txt").read_text() == "my notes\n"


def test_an_out_folder_that_is_a_file_is_refused(tmp_path, capsys):
    _inputs(tmp_path)
    (tmp_path / "out").write_text("mine\n")
    res = fesa_main(capsys, "-q", "acoustic-baseline", tmp_path / "fold", "--out", tmp_path / "out", "--overwrite")
    one_line_error(res, f"{tmp_path / 'out'} is a file; a folder is needed there")
    assert (tmp_path / "out").read_text() == "mine\n"


@pytest.mark.parametrize("command", ["acoustic-baseline", "pseudo-labels"])
def test_overwrite_writes_beside_the_users_files_and_a_rerun_needs_none(demo_folds, tmp_path, capsys, command):
    fold, out = demo_folds / "fold1", tmp_path / "out"
    args = {
        "acoustic-baseline": ["acoustic-baseline", fold, "--out", out],
        "pseudo-labels": ["pseudo-labels", "--manifest-dir", fold, "--splits", "train,valid", "--features", "mfcc", "--clusters", "4", "--out", out],
    }[command]
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    one_line_error(fesa_main(capsys, "-q", *args), REFUSED)
    res = fesa_main(capsys, "-q", *args, "--overwrite")
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "notes.txt").read_text() == "my notes\n" and (out / OWN_OUT[command][1]).is_file()
    res = fesa_main(capsys, "-q", *args)  # onto its own output
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "notes.txt").read_text() == "my notes\n"


def test_stages_write_into_their_own_folders(demo_folds, tmp_path):
    """fesa run's stages of these commands: their folder holds the stage's stamp, which makes it theirs."""
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({**TINY_RUN, "manifests": str(demo_folds)}))
    run = ["run", config, "--exp-dir", tmp_path / "exp", "--stages", "reference:tapt-labels"]
    res = run_fesa(*run)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "exp" / "fold1" / "evaluate" / "reference" / METRICS_FILE).is_file()
    assert (tmp_path / "exp" / "fold1" / "tapt-labels" / LABELS_INFO).is_file()
    res = run_fesa(*run)
    assert res.returncode == 0 and res.stderr.count("complete, skipped") == 2, res.stderr[-3000:]
