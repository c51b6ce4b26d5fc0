"""fesa prepare-emobox on a generated corpus in EmoBox's layout: the layout it writes, and every check it makes."""

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from fesa_fairseq.data.files import read_manifest

from emobox_fixture import NAME, make_emobox_corpus, write_jsonl
from tiny_hubert import run_fesa


@pytest.fixture
def corpus(tmp_path):
    return make_emobox_corpus(tmp_path)


def prepare(corpus_dir, audio, out, *extra):
    return run_fesa("-q", "prepare-emobox", corpus_dir, out, "--audio-root", audio, *extra)


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}


def test_folds_classes_and_audio(corpus, tmp_path):
    corpus_dir, audio, rows = corpus
    out = tmp_path / "out"
    res = prepare(corpus_dir, audio, out)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads((out / "prepare.json").read_text())
    assert info["classes"] == ["ang", "hap", "neu", "sad"] and info["utterances"] == len(rows)
    assert info["valid"]["4"] == "the corpus's valid list" and info["valid"]["1"].startswith("a label-stratified holdout of 0.1")
    for k in (1, 2, 3, 4):
        fold = out / f"fold{k}"
        assert (fold / "dict.emo.txt").read_text().split()[::2] == ["ang", "hap", "neu", "sad"]
        test_keys = {r["key"] for r in rows if r["spk"] == k - 1}
        test_rows = read_manifest(fold / "test.tsv")[1]
        assert len(test_rows) == len(test_keys)
        train_n = len(read_manifest(fold / "train.tsv")[1])
        assert [int(c) for c in (fold / "dict.emo.txt").read_text().split()[1::2]] and sum(
            int(c) for c in (fold / "dict.emo.txt").read_text().split()[1::2]
        ) == train_n
    root, manifest = read_manifest(out / "fold1" / "test.tsv")
    assert Path(root) == (out / "audio").resolve()
    for rel, n in manifest:  # every file 16 kHz mono 16-bit, as long as the manifest says
        i = sf.info(str(Path(root) / rel))
        assert (i.samplerate, i.channels, i.subtype, i.frames) == (16000, 1, "PCM_16", n)
    listing = {line.split("\t")[0]: line.split("\t") for line in (out / "utterances.tsv").read_text().splitlines()[1:]}
    assert float(listing[f"{NAME}-spk0-cut"][3]) == pytest.approx(0.75, abs=1e-3)  # cut by start and end time
    assert listing[f"{NAME}-spk0-excited-0"][1:3] == ["hap", "excited"]  # two raw labels, one class


def test_a_rerun_reuses_what_did_not_change(corpus, tmp_path):
    corpus_dir, audio, rows = corpus
    out = tmp_path / "out"
    assert prepare(corpus_dir, audio, out).returncode == 0
    res = prepare(corpus_dir, audio, out, "--overwrite")
    assert res.returncode == 0 and json.loads((out / "prepare.json").read_text())["audio"] == {"converted": 0, "reused": len(rows)}
    changed = audio / rows[0]["wav"]
    changed.write_bytes(changed.read_bytes())  # a new modification time: converted again
    res = run_fesa("prepare-emobox", corpus_dir, out, "--audio-root", audio, "--overwrite")
    assert res.returncode == 0 and f"audio: 1 converted, {len(rows) - 1} reused" in res.stdout


def mutate_listing(corpus_dir: Path, change) -> None:
    path = corpus_dir / f"{NAME}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    write_jsonl(path, change(rows))


CHECKS = {
    "unmapped label": (lambda c, a: mutate_listing(c, lambda rows: rows[:1] + [{**rows[1], "emo": "bored"}] + rows[2:]), "label 'bored' is not in"),
    "missing audio": (lambda c, a: (a / f"{NAME}/spk1/sad_1.wav").unlink(), "does not exist"),
    "unreadable audio": (lambda c, a: (a / f"{NAME}/spk1/sad_1.wav").write_text("an mp4 in disguise"), "soundfile cannot read"),
    "repeated key": (lambda c, a: mutate_listing(c, lambda rows: rows + [rows[3]]), "appears twice (first at"),
    "leak": (
        lambda c, a: (c / "fold_1" / f"{NAME}_train_fold_1.jsonl").write_text(
            (c / "fold_1" / f"{NAME}_train_fold_1.jsonl").read_text()
            + (c / "fold_1" / f"{NAME}_test_fold_1.jsonl").read_text().splitlines()[0]
            + "\n"
        ),
        "is in both the train and the test list of fold 1",
    ),
    "no test list": (lambda c, a: (c / "fold_2" / f"{NAME}_test_fold_2.jsonl").unlink(), f"has no {NAME}_test_fold_2.jsonl"),
    "a class unseen": (
        lambda c, a: write_jsonl(
            c / "fold_3" / f"{NAME}_train_fold_3.jsonl",
            [json.loads(x) for x in (c / "fold_3" / f"{NAME}_train_fold_3.jsonl").read_text().splitlines() if json.loads(x)["emo"] != "sad"],
        ),
        "its train split has no sad utterance",
    ),
}


@pytest.mark.parametrize("case", list(CHECKS))
def test_every_check_stops_before_anything_is_written(corpus, tmp_path, case):
    corpus_dir, audio, _ = corpus
    out = tmp_path / "out"
    assert prepare(corpus_dir, audio, out).returncode == 0
    before = snapshot(out)
    damage, message = CHECKS[case]
    damage(corpus_dir, audio)
    res = prepare(corpus_dir, audio, out, "--overwrite")
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert res.stderr.count("\n") == 1  # one line
    assert snapshot(out) == before  # the previous layout untouched
    fresh = tmp_path / "fresh"
    assert prepare(corpus_dir, audio, fresh).returncode == 2 and not fresh.exists()


def test_unmapped_labels_can_be_dropped_and_counted(corpus, tmp_path):
    corpus_dir, audio, rows = corpus
    mutate_listing(corpus_dir, lambda rs: [{**r, "emo": "bored"} if r["key"].endswith("neutral-0") else r for r in rs])
    res = prepare(corpus_dir, audio, tmp_path / "out", "--drop-unmapped")
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((tmp_path / "out" / "prepare.json").read_text())
    assert info["dropped"]["unmapped_labels"] == {"bored": 4} and info["utterances"] == len(rows) - 4


def test_a_folder_that_is_not_emobox_is_named(tmp_path):
    (tmp_path / "data" / "x").mkdir(parents=True)
    (tmp_path / "data" / "x" / "label_map.json").write_text('{"a": "b"}')
    (tmp_path / "audio").mkdir()  # the output may not lie inside the audio root
    res = prepare(tmp_path / "data" / "x", tmp_path / "audio", tmp_path / "out")
    assert res.returncode == 2 and "x.jsonl does not exist: give one corpus folder of EmoBox's data/" in res.stderr
    shutil.rmtree(tmp_path / "data")


def test_a_model_scored_on_another_corpus_through_a_class_map(finetuned_classifier, corpus, tmp_path):
    """The demo classifier (neu, hap, ang, sad) on the EmoBox corpus kept with its raw labels: excited has no
    counterpart and is dropped, the others map onto the model's classes."""
    corpus_dir, audio, rows = corpus
    (corpus_dir / "label_map.json").write_text(json.dumps({r: r for r in ("neutral", "happy", "excited", "angry", "sad")}))
    assert prepare(corpus_dir, audio, tmp_path / "m").returncode == 0
    checkpoint = finetuned_classifier / "checkpoints" / "checkpoint_best.pt"
    out = tmp_path / "ev"
    res = run_fesa(
        "evaluate", checkpoint, tmp_path / "m" / "fold1", "--out", out, "--device", "cpu", "--map", "neutral=neu,happy=hap,angry=ang,sad=sad"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    test = [r for r in rows if r["spk"] == 0]
    excited = sum(r["emo"] == "excited" for r in test)
    assert metrics["cross_corpus"]["dropped"] == {"excited": excited} and metrics["utterances"] == len(test) - excited
    assert metrics["labels"] == ["neu", "hap", "ang", "sad"] and "dropped (no counterpart): {'excited': %d}" % excited in res.stdout
    bad = run_fesa("evaluate", checkpoint, tmp_path / "m" / "fold1", "--out", tmp_path / "x", "--map", "neutral=calm")
    assert bad.returncode == 2 and "--map names calm, which" in bad.stderr


def test_speaker_validation_is_refused_naming_the_key(corpus, tmp_path):
    corpus_dir, audio, _ = corpus
    res = prepare(corpus_dir, audio, tmp_path / "out", "--validation", "speakers")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "validation: speakers" in res.stderr and "has none" in res.stderr
    assert not (tmp_path / "out").exists()
