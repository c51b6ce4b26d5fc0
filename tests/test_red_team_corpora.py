"""Third red-team pass, corpus preparation (prepare-table, prepare-emobox): every mistake found is refused in one line
naming the file and row(s) and the fix, exit 2, with the inputs byte for byte as they were and nothing at OUT."""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from fesa.checkpoints import HUBERT_GEOMETRY
from fesa.corpora.checks import RECEPTIVE_FIELD
from fesa.corpora.table import corpus_fingerprint_files

from cli_helpers import fesa_main, one_line_error, snapshot
from emobox_fixture import NAME, make_emobox_corpus, write_audio
from tiny_hubert import TINY_RUN

EMOTIONS = ("calm", "angry", "happy")


def refused(capsys, args, needles, inputs: Path, out: Path):
    """`fesa -q ARGS` fails in one line holding every needle; the inputs are unchanged and OUT was not written
    (nor any staging folder left beside it)."""
    before, out_before = snapshot(inputs), snapshot(out) if out.exists() else None
    res = fesa_main(capsys, "-q", *args)
    one_line_error(res, needles[0])
    assert all(n in res.stderr for n in needles) and res.stderr.count("\n") == 1, res.stderr
    assert snapshot(inputs) == before
    assert (snapshot(out) if out.exists() else None) == out_before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return res


# ---------------------------------------------------------------- a table corpus


def make_table(folder: Path, split: bool = False) -> Path:
    """3 speakers x 3 emotions x 2 takes of distinct audio (0.3 s, 16 kHz) and a 2 s recording, wav/long.wav, listed in
    no row; columns path, emotion, speaker[, split], start, end. With split: speaker spk2 is the test split."""
    lines = [f"path,emotion,speaker{',split' if split else ''},start,end"]
    for spk in range(3):
        for i, e in enumerate(EMOTIONS):
            for take in range(2):
                rel = f"wav/s{spk}_{e}_{take}.wav"
                write_audio(folder / rel, 0.3, 16000, 1, seed=spk * 100 + i * 10 + take)
                lines.append(f"{rel},{e},spk{spk}{(',test' if spk == 2 else ',train') if split else ''},,")
    write_audio(folder / "wav" / "long.wav", 2.0, 16000, 1, seed=999)
    (folder / "corpus.csv").write_text("\n".join(lines) + "\n")
    return folder / "corpus.csv"


def add_rows(table: Path, *rows: str) -> None:
    table.write_text(table.read_text() + "".join(f"{r}\n" for r in rows))


@pytest.fixture
def table(tmp_path):
    return make_table(tmp_path / "in")


@pytest.fixture
def split_table(tmp_path):
    return make_table(tmp_path / "in", split=True)


def refuse_table(capsys, table, needles, *extra):
    return refused(capsys, ["prepare-table", table, table.parent.parent / "out", *extra], needles, table.parent, table.parent.parent / "out")


def prepare_table_ok(capsys, table, *extra):
    res = fesa_main(capsys, "-q", "prepare-table", table, table.parent.parent / "out", *extra)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads((table.parent.parent / "out" / "prepare.json").read_text())


@pytest.mark.parametrize("spelling", ["wav/./s0_calm_0.wav", "wav/../wav/s0_calm_0.wav", "wav//s0_calm_0.wav"])
def test_table_one_file_spelled_two_ways_in_train_and_test(capsys, split_table, spelling):
    add_rows(split_table, f"{spelling},calm,spk2,test,,")
    refuse_table(capsys, split_table, ["corpus.csv:2 and ", "corpus.csv:20: the same file", "and the test split of fold 1"])


def test_table_one_file_spelled_two_ways_in_two_groups(capsys, table):
    add_rows(table, "wav/./s0_calm_0.wav,calm,spk1,,")
    refuse_table(capsys, table, ["corpus.csv:2 and ", "corpus.csv:20: the same file", "in two speaker groups (spk0, spk1)"])


def test_table_a_test_file_with_a_slice_of_it_in_train(capsys, split_table):
    add_rows(split_table, "wav/s2_calm_0.wav,calm,spk0,train,0.05,0.2")
    refuse_table(capsys, split_table, ["corpus.csv:14 and ", "corpus.csv:20: overlapping parts of", "and the test split of fold 1"])


def test_table_overlapping_segments_in_two_groups_but_adjacent_ones_pass(capsys, table):
    original = table.read_text()
    add_rows(table, "wav/long.wav,calm,spk0,0.0,1.0", "wav/long.wav,angry,spk1,0.5,1.5")
    refuse_table(capsys, table, ["corpus.csv:20 and ", "corpus.csv:21: overlapping parts of", "long.wav in two speaker groups (spk0, spk1)"])
    table.write_text(original)
    add_rows(table, "wav/long.wav,calm,spk0,0.0,1.0", "wav/long.wav,angry,spk1,1.0,2.05")  # touching, and 0.05 s past the end
    assert prepare_table_ok(capsys, table)["utterances"] == 20


def outside_spellings(root: Path, outside: Path):
    return [os.path.relpath(outside, root), str(outside), "../" * 20 + "etc/passwd"]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_table_paths_outside_the_audio_root(capsys, table, tmp_path, which):
    outside = tmp_path / "elsewhere" / "x.wav"
    write_audio(outside, 0.3, 16000, 1, seed=555)
    path = outside_spellings(table.parent, outside)[which]
    add_rows(table, f"{path},calm,spk0,,")
    refuse_table(capsys, table, ["corpus.csv:20: ", "lies outside --audio-root", "--allow-outside-root"])
    if which < 2:  # the user says so: the file is read where it is
        assert prepare_table_ok(capsys, table, "--allow-outside-root")["utterances"] == 19


def test_table_with_a_byte_order_mark_is_read(capsys, table):
    table.write_bytes("\ufeff".encode() + table.read_bytes())
    assert prepare_table_ok(capsys, table)["classes"] == sorted(EMOTIONS)


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda d: None, ["nowhere.wav does not exist (is --audio-root (default: the table's folder) the folder the table's paths start from?)"]),
        (lambda d: (d / "wav" / "nowhere.wav").mkdir(), ["nowhere.wav is a folder, not an audio file"]),
        (lambda d: (d / "wav" / "nowhere.wav").symlink_to("nowhere.wav"), ["cannot open", "nowhere.wav: Too many levels of symbolic links"]),
        (lambda d: (d / "wav" / "nowhere.wav").symlink_to("gone.wav"), ["nowhere.wav is a symlink to gone.wav, which does not exist"]),
    ],
)
def test_table_audio_that_is_no_file_is_named_for_what_it_is(capsys, table, make, needles):
    make(table.parent)
    add_rows(table, "wav/nowhere.wav,calm,spk0,,")
    res = refuse_table(capsys, table, ["corpus.csv:20: ", *needles])
    assert "EmoBox" not in res.stderr


def test_table_times_past_the_file_name_the_column_and_the_unit(capsys, table):
    add_rows(table, "wav/long.wav,calm,spk0,0.5,1500")
    res = refuse_table(capsys, table, ["corpus.csv:20: end 1500 is past the end of", "2.000 s long", "milliseconds"])
    assert "end_time" not in res.stderr


@pytest.mark.parametrize(
    "row, needles",
    [
        ("wav/short.wav,calm,spk0,,", ["corpus.csv:20: ", "short.wav holds 15.0 ms, shorter than the encoder's receptive field (25 ms)"]),
        ("wav/long.wav,calm,spk0,0.5,0.515", ["corpus.csv:20: ", "holds 15.0 ms between its start and end, shorter than"]),
    ],
)
def test_table_utterances_shorter_than_the_receptive_field(capsys, table, row, needles):
    assert RECEPTIVE_FIELD == HUBERT_GEOMETRY.receptive_field  # the corpora layer's copy of the encoder's number
    write_audio(table.parent / "wav" / "short.wav", 0.015, 16000, 1, seed=7)
    add_rows(table, row)
    res = refuse_table(capsys, table, needles)
    assert "start_time" not in res.stderr and (",," not in row or "start" not in res.stderr)


def test_table_group_that_is_no_column_is_named(capsys, table):
    res = refuse_table(
        capsys,
        table,
        ["--group nonexist: ", "corpus.csv has no such column (its columns: path, emotion, speaker, start, end)"],
        "--group",
        "nonexist",
    )
    assert "'speaker'" not in res.stderr


@pytest.mark.parametrize("row, fields", [("wav/s0_calm_0.wav,calm,spk0,,,extra", 6), ("wav/s0_calm_0.wav,calm", 2)])
def test_table_row_with_more_or_fewer_fields_than_the_header(capsys, table, row, fields):
    add_rows(table, row)
    refuse_table(capsys, table, [f"corpus.csv:20: {fields} fields, the header has 5: quote a field that holds ','"])


def test_table_header_naming_a_column_twice(capsys, table):
    lines = table.read_text().splitlines()
    table.write_text("\n".join(["path,emotion,speaker,start,emotion"] + lines[1:]) + "\n")
    refuse_table(capsys, table, ["corpus.csv:1: the header names 'emotion' twice"])


def test_table_more_folds_than_groups_here_and_in_fesa_run(capsys, table, tmp_path):
    refuse_table(capsys, table, ["--folds 9: the table has 3 'speaker' group(s)", "give 2 to 3"], "--folds", "9")
    config = tmp_path / "e.yaml"
    config.write_text(
        yaml.safe_dump({**{k: v for k, v in TINY_RUN.items() if k != "folds"}, "corpus": {"format": "table", "path": str(table), "n_folds": 9}})
    )
    res = fesa_main(capsys, "run", config, "--exp-dir", tmp_path / "exp", "--dry-run")
    one_line_error(res, "the table has 3 'speaker' group(s)")
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("name", ["very angry", "an\u00a0gry", "an\u2003gry", "an\u200bgry"])
def test_table_class_names_dict_emo_cannot_hold(capsys, table, name):
    add_rows(table, f"wav/long.wav,{name},spk0,,")
    refuse_table(capsys, table, ["corpus.csv:20: 'emotion': the class name", "is not one printable word"])


def test_table_with_one_class(capsys, table):
    lines = table.read_text().splitlines()
    table.write_text("\n".join(lines[:1] + [line.replace(",angry,", ",calm,").replace(",happy,", ",calm,") for line in lines[1:]]) + "\n")
    refuse_table(capsys, table, ["corpus.csv: every utterance is of the one class 'calm'; a classifier needs two or more"])


def test_table_one_utterance_per_class_leaves_valid_empty(capsys, tmp_path):
    folder = tmp_path / "in"
    lines = ["path,emotion,split"]
    for i, e in enumerate(EMOTIONS):
        for split in ("train", "test"):
            write_audio(folder / f"{e}_{split}.wav", 0.3, 16000, 1, seed=10 * i + len(split))
            lines.append(f"{e}_{split}.wav,{e},{split}")
    (folder / "corpus.csv").write_text("\n".join(lines) + "\n")
    refuse_table(capsys, folder / "corpus.csv", ["corpus.csv, fold 1: its valid split is empty", "here angry: 1, calm: 1, happy: 1"])


@pytest.mark.parametrize("out_of", [lambda t: t.parent / "out", lambda t: t])
def test_table_output_inside_its_inputs_refused_before_the_table_is_read(capsys, table, out_of):
    table.write_bytes(b"\xff\xfe not even text")
    out = out_of(table)
    res = refused(capsys, ["prepare-table", table, out, "--overwrite"], ["this command's"], table.parent, table.parent.parent / "nothing")
    assert "UTF-8" not in res.stderr


# ---------------------------------------------------------------- an EmoBox corpus


@pytest.fixture
def emobox(tmp_path):
    corpus_dir, audio, rows = make_emobox_corpus(tmp_path / "in")
    return corpus_dir, audio, rows, tmp_path / "out"


def listing(corpus_dir: Path) -> Path:
    return corpus_dir / f"{NAME}.jsonl"


def fold_list(corpus_dir: Path, k: int, split: str) -> Path:
    return corpus_dir / f"fold_{k}" / f"{NAME}_{split}_fold_{k}.jsonl"


def append(path: Path, *lines: str) -> None:
    path.write_text(path.read_text() + "".join(f"{line}\n" for line in lines))


def add_utterance(corpus_dir: Path, key: str, wav: str, **times) -> int:
    """A new key in the listing and in fold 1's train list (fold 1 tests on spk0); its listing line."""
    row = json.dumps({"key": key, "wav": wav, "emo": "neutral", **times})
    append(listing(corpus_dir), row)
    append(fold_list(corpus_dir, 1, "train"), row)
    return len(listing(corpus_dir).read_text().splitlines())


def refuse_emobox(capsys, emobox, needles, *extra):
    corpus_dir, audio, _, out = emobox
    return refused(capsys, ["prepare-emobox", corpus_dir, out, "--audio-root", audio, *extra], needles, corpus_dir.parent.parent, out)


def test_emobox_one_file_under_two_keys_in_train_and_test(capsys, emobox):
    corpus_dir, _, rows, _ = emobox
    line = add_utterance(corpus_dir, "again", rows[0]["wav"])
    refuse_emobox(capsys, emobox, [f"{NAME}.jsonl:1 and ", f"{NAME}.jsonl:{line}: the same file", "and the test split of fold 1"])


def test_emobox_a_test_file_with_a_slice_of_it_in_train(capsys, emobox):
    corpus_dir, _, rows, _ = emobox
    line = add_utterance(corpus_dir, "slice", rows[0]["wav"], start_time=0.1, end_time=0.4)
    refuse_emobox(capsys, emobox, [f"{NAME}.jsonl:1 and ", f"{NAME}.jsonl:{line}: overlapping parts of", "and the test split of fold 1"])


def test_emobox_a_copy_of_a_test_file_in_train_is_found_by_content(capsys, emobox):
    """Caught once converted, in staging: a prepared OUT replaced with --overwrite is left as it was."""
    corpus_dir, audio, rows, out = emobox
    assert fesa_main(capsys, "-q", "prepare-emobox", corpus_dir, out, "--audio-root", audio).returncode == 0
    copy = Path(NAME) / "copies" / Path(rows[0]["wav"]).name
    (audio / copy).parent.mkdir()
    shutil.copyfile(audio / rows[0]["wav"], audio / copy)
    line = add_utterance(corpus_dir, "copy", copy.as_posix())
    needles = [f"{NAME}.jsonl:1 and ", f"{NAME}.jsonl:{line}: the same audio (identical once converted", "and the test split of fold 1"]
    refuse_emobox(capsys, emobox, needles, "--overwrite")
    shutil.rmtree(out)
    refuse_emobox(capsys, emobox, needles)


def test_emobox_valid_list_holding_training_keys(capsys, emobox):
    corpus_dir = emobox[0]
    append(fold_list(corpus_dir, 4, "valid"), fold_list(corpus_dir, 4, "train").read_text().splitlines()[0])
    refuse_emobox(capsys, emobox, ["fold_4: key ", "is in both the train and the valid list of fold 4"])


def test_emobox_key_listed_twice_in_a_train_list(capsys, emobox):
    corpus_dir = emobox[0]
    train = fold_list(corpus_dir, 1, "train")
    n = len(train.read_text().splitlines())
    append(train, train.read_text().splitlines()[2])
    refuse_emobox(capsys, emobox, [f"{train.name}:{n + 1}: key ", f"is listed twice (first at {train}:3)"])


@pytest.mark.parametrize("which", [0, 1, 2])
def test_emobox_paths_outside_the_audio_root(capsys, emobox, tmp_path, which):
    corpus_dir, audio, rows, _ = emobox
    outside = tmp_path / "elsewhere" / "x.wav"
    write_audio(outside, 0.3, 16000, 1, seed=555)
    text = listing(corpus_dir).read_text().replace(json.dumps(rows[1]["wav"]), json.dumps(outside_spellings(audio, outside)[which]), 1)
    listing(corpus_dir).write_text(text)
    refuse_emobox(capsys, emobox, [f"{NAME}.jsonl:2: ", "lies outside --audio-root", "--allow-outside-root"])
    if which < 2:
        res = fesa_main(capsys, "-q", "prepare-emobox", corpus_dir, emobox[3], "--audio-root", audio, "--allow-outside-root")
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize(
    "damage, needles",
    [
        (
            lambda c: (c / "label_map.json").write_text(
                '{"neutral": "neu", "happy": "hap", "excited": "hap", "angry": "ang", "angry": "sad", "sad": "sad"}'
            ),
            ["label_map.json gives the key 'angry' twice: keep one"],
        ),
        (
            lambda c: listing(c).write_text(listing(c).read_text().replace('"emo": "sad"', '"emo": "sad", "emo": "angry"', 1)),
            ["gives the key 'emo' twice", f"{NAME}.jsonl:"],
        ),
        (
            lambda c: listing(c).write_text(listing(c).read_text().replace('"start_time": 1.0', '"start_time": NaN')),
            [f"{NAME}.jsonl:41 is not valid JSON", "NaN is not a JSON number"],
        ),
        (
            lambda c: listing(c).write_text(listing(c).read_text().replace('"end_time": 1.75', '"end_time": 1750')),
            [f"{NAME}.jsonl:41: end_time 1750 is past the end of", "3.000 s long; times are in seconds: was it given in milliseconds?"],
        ),
        (
            lambda c: listing(c).write_text(listing(c).read_text().replace('"end_time": 1.75', '"end_time": 1.015')),
            [f"{NAME}.jsonl:41: ", "holds 15.0 ms between its start_time and end_time, shorter than the encoder's receptive field"],
        ),
        (
            lambda c: (c / "label_map.json").write_text('{"neutral": "neu", "happy": "very happy"}'),
            ["label_map.json, 'happy': the class name 'very happy'"],
        ),
        (
            lambda c: (c / "label_map.json").write_text(json.dumps(dict.fromkeys(["neutral", "happy", "excited", "angry", "sad"], "emo"))),
            ["one class 'emo'"],
        ),
        (lambda c: fold_list(c, 2, "test").write_text(""), ["fold 2: its test split is empty"]),
        (lambda c: fold_list(c, 3, "train").write_text(""), ["fold 3: its train split is empty"]),
        (lambda c: fold_list(c, 4, "valid").write_text(""), ["fold 4: its valid split is empty"]),
        (lambda c: (c / "fold_1").rename(c / "fold_0"), ["fold_0: folds are numbered from 1"]),
    ],
)
def test_emobox_listing_mistakes(capsys, emobox, damage, needles):
    damage(emobox[0])
    refuse_emobox(capsys, emobox, needles)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: p.mkdir(), "is a folder, not an audio file"),
        (lambda p: p.symlink_to(p.name), "cannot open"),
        (lambda p: None, "does not exist (is --audio-root the folder EmoBox's wav paths start from?)"),
    ],
)
def test_emobox_audio_that_is_no_file(capsys, emobox, make, needle):
    _, audio, rows, _ = emobox
    path = audio / rows[1]["wav"]
    path.unlink()
    make(path)
    refuse_emobox(capsys, emobox, [f"{NAME}.jsonl:2: ", needle])


def test_emobox_output_inside_its_inputs_refused_before_the_listing_is_read(capsys, emobox):
    corpus_dir, audio, _, _ = emobox
    listing(corpus_dir).write_text("{not json\n")
    for out in (corpus_dir / "out", audio / "out", audio):
        refused(
            capsys,
            ["prepare-emobox", corpus_dir, out, "--audio-root", audio, "--overwrite"],
            ["this command's"],
            corpus_dir.parent.parent,
            corpus_dir.parent / "x",
        )


# ---------------------------------------------------------------- what defines a corpus, for fesa run's fingerprint


def test_corpus_fingerprint_files(emobox, table):
    corpus_dir = emobox[0]
    files = corpus_fingerprint_files("emobox", corpus_dir)
    assert files[:2] == [listing(corpus_dir), corpus_dir / "label_map.json"]
    assert set(files[2:]) == set(corpus_dir.glob("fold_*/*.jsonl")) and len(files[2:]) == 9
    assert corpus_fingerprint_files("table", table) == [table]
