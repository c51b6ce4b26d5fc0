"""fesa prepare-table: a corpus of one's own from a CSV or TSV table, with speaker groups."""

import json

import pytest
import soundfile as sf
import yaml

from fesa_fairseq.data.files import read_manifest

from emobox_fixture import write_audio
from tiny_hubert import TINY_RUN, run_fesa

EMOTIONS = ("calm", "angry", "happy")


@pytest.fixture
def table(tmp_path):
    """4 speakers x 3 emotions x 2 takes, at 44.1 kHz stereo or 22.05 kHz mono, listed in a CSV; in a folder of its
    own, since the outputs (beside it) may not lie inside the table's folder, the default audio root."""
    lines, folder = ["path,emotion,speaker"], tmp_path / "corpus"
    for spk in range(4):
        for i, e in enumerate(EMOTIONS):
            for take in range(2):
                rel = f"wav/s{spk}_{e}_{take}.{'flac' if take else 'wav'}"
                seed = spk * 100 + i * 10 + take  # distinct audio: the same samples in train and test would be refused as a leak
                write_audio(folder / rel, 0.5 + 0.1 * take, 44100 if take else 22050, 2 if take else 1, seed=seed)
                lines.append(f"{rel},{e},spk{spk}")
    (folder / "corpus.csv").write_text("\n".join(lines) + "\n")
    return folder / "corpus.csv"


def prepare(table, out, *extra):
    return run_fesa("-q", "prepare-table", table, out, *extra)


def test_leave_one_speaker_out(table, tmp_path):
    res = prepare(table, tmp_path / "out")
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert info["classes"] == ["angry", "calm", "happy"] and info["folds_from"] == "leave-one-group-out over speaker"
    assert sorted(info["folds"]) == ["1", "2", "3", "4"]
    for k in range(1, 5):
        assert sum(info["folds"][str(k)]["test"].values()) == 6
        root, rows = read_manifest(tmp_path / "out" / f"fold{k}" / "test.tsv")
        assert all(sf.info(f"{root}/{rel}").samplerate == 16000 for rel, _ in rows)


def test_n_folds_of_whole_groups_and_a_given_split(table, tmp_path):
    res = prepare(table, tmp_path / "two", "--folds", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((tmp_path / "two" / "prepare.json").read_text())
    assert [sum(info["folds"][k]["test"].values()) for k in ("1", "2")] == [12, 12]
    lines = table.read_text().splitlines()
    split = ["path,emotion,speaker,split"] + [f"{line},{'test' if ',spk3' in line else 'train'}" for line in lines[1:]]
    given = table.with_name("split.csv")
    given.write_text("\n".join(split) + "\n")
    res = prepare(given, tmp_path / "given")
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((tmp_path / "given" / "prepare.json").read_text())
    assert list(info["folds"]) == ["1"] and sum(info["folds"]["1"]["test"].values()) == 6 and info["folds_from"] == "the table's split column"


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda lines: ["file,emotion,speaker"] + lines[1:], "the header needs the columns path, emotion (missing: path)"),
        (lambda lines: lines + [lines[1]], "appears twice"),
        (lambda lines: lines[:1] + ["wav/nowhere.wav,calm,spk0"] + lines[1:], "does not exist"),
        (lambda lines: lines[:1] + [",calm,spk0"] + lines[1:], "an empty 'path' or 'emotion'"),
        (lambda lines: [line for line in lines if "angry" not in line or "spk0" in line], "its train split has no angry utterance"),
    ],
)
def test_mistakes_in_the_table_are_named(table, tmp_path, edit, message):
    table.write_text("\n".join(edit(table.read_text().splitlines())) + "\n")
    res = prepare(table, tmp_path / "out")
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert not (tmp_path / "out").exists()


def test_fesa_run_plans_every_fold_of_a_table(table, tmp_path):
    config = tmp_path / "e.yaml"
    run = {k: v for k, v in TINY_RUN.items() if k != "folds"}
    config.write_text(yaml.safe_dump({**run, "corpus": {"format": "table", "path": str(table), "n_folds": 2}}))
    res = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"fesa prepare-table {table} {tmp_path / 'exp' / 'manifests'} --valid-fraction 0.1 --overwrite --folds 2" in res.stdout
    assert "# fold2/tapt" in res.stdout and "# fold3/" not in res.stdout


def test_speaker_validation_holds_out_whole_speakers_named_by_the_speaker_column(table, tmp_path):
    res = prepare(table, tmp_path / "out", "--folds", "2", "--validation", "speakers")
    assert res.returncode == 0, res.stderr[-2000:]
    for k in (1, 2):
        fold = tmp_path / "out" / f"fold{k}"
        speakers = {
            split: {line.split("/")[-1][4:6] for line in (fold / f"{split}.tsv").read_text().splitlines()[1:]} for split in ("train", "valid")
        }
        assert len(speakers["valid"]) == 1 and not speakers["valid"] & speakers["train"]
    lines = table.read_text().splitlines()
    bare = table.with_name("bare.csv")
    bare.write_text("\n".join(["path,emotion,session"] + [line.replace(",spk", ",ses") for line in lines[1:]]) + "\n")
    res = prepare(bare, tmp_path / "bare", "--validation", "speakers")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "needs a 'speaker' column" in res.stderr, res.stderr[-2000:]
