import json
from collections import Counter
from pathlib import Path

import pytest

from fesa.corpora.iemocap import CLASSES, parse_evaluation_file, prepare_iemocap, scan_iemocap
from fesa.errors import FesaError
from fesa_fairseq.data.files import read_manifest
from fesa_fairseq.errors import InputError

from iemocap_fixture import kept_ids, make_iemocap_tree
from tiny_hubert import run_fesa


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "IEMOCAP_full_release"
    return root, make_iemocap_tree(root)


def fesa(*args, cwd=None):
    return run_fesa("-q", *args, cwd=cwd)


def read_split(fold_dir: Path, split: str):
    root, rows = read_manifest(fold_dir / f"{split}.tsv")
    labels = (fold_dir / f"{split}.emo").read_text().splitlines()
    assert len(labels) == len(rows)
    return root, [(Path(rel).stem, n, lab) for (rel, n), lab in zip(rows, labels)]


def test_parser_keeps_turn_lines_only(tree):
    root, _ = tree
    turns = parse_evaluation_file(root / "Session1/dialog/EmoEvaluation/Ses01M_script01_1.txt")
    assert [t.utt_id for t in turns[:2]] == ["Ses01M_script01_1_F000", "Ses01M_script01_1_M000"]
    assert len(turns) == 22 and {t.code for t in turns} == {"neu", "hap", "exc", "ang", "sad", "fru", "sur", "fea", "dis", "oth", "xxx"}
    assert turns[0].start == 1.0 and turns[0].end == 2.5


def test_scan_finds_exactly_the_kept_utterances(tree):
    root, expected = tree
    scan = scan_iemocap(root, progress=False)
    found = {u.utt_id: u for u in scan["utterances"]}
    assert set(found) == set(expected)  # decoy sub-folders and ._ twins contribute nothing
    for utt_id, e in expected.items():
        u = found[utt_id]
        assert (u.session, u.speaker, u.label, u.code, u.num_samples) == (e["session"], e["speaker"], e["label"], e["code"], e["samples"])
        assert (root / u.wav).is_file()
    assert scan["dropped"] == {c: 20 for c in ("dis", "fea", "fru", "oth", "sur", "xxx")}


def test_folds_follow_leave_one_session_out(tree, tmp_path):
    root, expected = tree
    out = tmp_path / "manifests"
    summary = prepare_iemocap(root, out, valid_fraction=0.1, seed=3, progress=False)
    assert summary["utterances"] == len(expected)
    for k in range(1, 6):
        fold = out / f"fold{k}"
        splits = {s: read_split(fold, s) for s in ("train", "valid", "test")}
        audio_root = {r for r, _ in splits.values()}
        assert audio_root == {str(root.resolve())}
        ids = {s: [utt for utt, _, _ in rows] for s, (_, rows) in splits.items()}
        assert sorted(ids["test"]) == kept_ids(expected, k)
        assert not set(ids["train"]) & set(ids["valid"])
        assert set(ids["train"]) | set(ids["valid"]) == set(expected) - set(ids["test"])
        speakers = lambda split: {expected[u]["speaker"] for u in ids[split]}  # noqa: E731
        assert all(s.startswith(f"Ses0{k}") for s in speakers("test"))
        assert not any(s.startswith(f"Ses0{k}") for s in speakers("train") | speakers("valid"))
        for split, (_, rows) in splits.items():
            for utt, n, label in rows:
                assert (n, label) == (expected[utt]["samples"], expected[utt]["label"])
        # stratified: every label held out in proportion (rounded) to its share of the training sessions
        pool = Counter(expected[u]["label"] for u in ids["train"] + ids["valid"])
        valid = Counter(expected[u]["label"] for u in ids["valid"])
        assert valid == {lab: max(1, round(0.1 * pool[lab])) for lab in pool}
        counts = [line.split() for line in (fold / "dict.emo.txt").read_text().splitlines()]
        train_counts = Counter(expected[u]["label"] for u in ids["train"])
        assert counts == [[lab, str(train_counts[lab])] for lab in CLASSES]
    listing = (out / "utterances.tsv").read_text().splitlines()
    assert listing[0].split("\t") == ["utt_id", "session", "speaker", "label", "code", "duration", "wav"]
    assert len(listing) == 1 + len(expected)
    assert json.loads((out / "prepare.json").read_text())["utterances"] == len(expected)


def test_holdout_is_deterministic(tree, tmp_path):
    root, _ = tree
    prepare_iemocap(root, tmp_path / "a", progress=False)
    prepare_iemocap(root, tmp_path / "b", progress=False)
    prepare_iemocap(root, tmp_path / "c", seed=7, progress=False)
    valid = lambda d: (d / "fold1" / "valid.tsv").read_text()  # noqa: E731
    assert valid(tmp_path / "a") == valid(tmp_path / "b")
    assert valid(tmp_path / "a") != valid(tmp_path / "c")


def test_known_totals_are_checked_on_a_release(tree, tmp_path):
    root, _ = tree
    summary = prepare_iemocap(root, tmp_path / "m", progress=False)
    assert summary["known_totals_checked"]
    assert "Session1: 20 utterances, a full release has 1085" in summary["known_total_mismatches"]
    assert "neu: 20 utterances, a full release has 1708" in summary["known_total_mismatches"]


def test_cli_prints_the_count_table(tree, tmp_path):
    root, _ = tree
    res = fesa("prepare-iemocap", root, tmp_path / "m")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("session"))
    assert header.split() == ["session", "neu", "hap", "ang", "sad", "total"]
    assert next(line for line in lines if line.lstrip().startswith("Session3")).split() == ["Session3", "4", "8", "4", "4", "20"]
    assert next(line for line in lines if line.lstrip().startswith("all")).split() == ["all", "20", "40", "20", "20", "100"]
    assert "differ from a complete IEMOCAP release" in res.stdout
    res = fesa("prepare-iemocap", root, tmp_path / "n", "--no-check-totals")  # a corpus in the layout that is no release
    assert res.returncode == 0 and "differ from" not in res.stdout and "IEMOCAP release" not in res.stdout


def _assert_clean_failure(res, needle: str, out: Path):
    assert res.returncode != 0
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and needle in err[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() or not any(out.rglob("*")), "nothing may be written when input is bad"


def test_missing_wav_is_named(tree, tmp_path):
    root, _ = tree
    wav = root / "Session2/sentences/wav/Ses02F_impro01/Ses02F_impro01_M001.wav"  # an ang turn (M002 is fru: dropped, its wav never read)
    wav.unlink()
    res = fesa("prepare-iemocap", root, tmp_path / "out")
    _assert_clean_failure(res, f"missing wav {wav.resolve()}", tmp_path / "out")
    assert "Ses02F_impro01.txt" in res.stderr


def test_corrupt_wav_is_named(tree, tmp_path):
    root, _ = tree
    wav = root / "Session4/sentences/wav/Ses04M_script01_1/Ses04M_script01_1_F000.wav"
    wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    res = fesa("prepare-iemocap", root, tmp_path / "out")
    _assert_clean_failure(res, f"cannot read wav {wav.resolve()}", tmp_path / "out")


def test_unknown_root_is_named(tmp_path):
    res = fesa("prepare-iemocap", tmp_path / "nowhere", tmp_path / "out")
    _assert_clean_failure(res, f"IEMOCAP root {tmp_path / 'nowhere'} does not exist", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    res = fesa("prepare-iemocap", tmp_path / "empty", tmp_path / "out")
    _assert_clean_failure(res, f"missing folder {tmp_path / 'empty' / 'Session1'}", tmp_path / "out")


def test_empty_session_is_named(tree, tmp_path):
    root, _ = tree
    for ev in (root / "Session5/dialog/EmoEvaluation").glob("Ses*.txt"):
        ev.write_text(
            ev.read_text()
            .replace("\tneu\t", "\txxx\t")
            .replace("\thap\t", "\txxx\t")
            .replace("\texc\t", "\txxx\t")
            .replace("\tang\t", "\txxx\t")
            .replace("\tsad\t", "\txxx\t")
        )
    with pytest.raises(FesaError, match="Session5 has no neu/hap/exc/ang/sad turn"):
        prepare_iemocap(root, tmp_path / "out", progress=False)


def test_failure_keeps_previous_output(tree, tmp_path):
    root, _ = tree
    out = tmp_path / "m"
    prepare_iemocap(root, out, progress=False)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    next((root / "Session3/sentences/wav").rglob("*_F000.wav")).unlink()
    with pytest.raises(InputError, match="missing wav"):  # found while scanning, after the output folder was allowed
        prepare_iemocap(root, out, progress=False, overwrite=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_unreadable_evaluation_file_is_named(tree, tmp_path):
    root, _ = tree
    ev = root / "Session1/dialog/EmoEvaluation/Ses01F_impro01.txt"
    ev.write_text("this is not an evaluation file\n")
    with pytest.raises(FesaError, match=f"evaluation file {ev.resolve()} has no turn lines"):
        prepare_iemocap(root, tmp_path / "out", progress=False)


def _speakers(fold: Path, split: str) -> set:
    return {
        line.split("\t")[0].rsplit("/", 1)[-1][:5] + line.split("\t")[0].rsplit("_", 1)[-1][0]
        for line in (fold / f"{split}.tsv").read_text().splitlines()[1:]
    }


def test_speaker_validation_holds_out_whole_speakers_of_the_demo(demo_folds, tmp_path):
    """validation: speakers on the demo corpus (IEMOCAP's layout, two speakers a session): no validation speaker is
    trained on, every fold still validates on 2 classes or more, and the default output is what it was."""
    corpus = demo_folds.parent / "corpus"
    res = fesa("prepare-iemocap", corpus, tmp_path / "speakers", "--valid-fraction", "0.2", "--no-check-totals", "--validation", "speakers")
    assert res.returncode == 0, res.stderr
    for k in range(1, 6):
        fold = tmp_path / "speakers" / f"fold{k}"
        valid, train = _speakers(fold, "valid"), _speakers(fold, "train")
        assert valid and not valid & train and not (valid | train) & _speakers(fold, "test")
        assert len(set((fold / "valid.emo").read_text().split())) >= 2
        assert (fold / "train.tsv").read_text() != (demo_folds / f"fold{k}" / "train.tsv").read_text()
    assert json.loads((tmp_path / "speakers" / "prepare.json").read_text())["validation"] == "speakers"
    prepare_iemocap(corpus, tmp_path / "default", valid_fraction=0.2, progress=False)
    for path in sorted(p.relative_to(demo_folds) for p in demo_folds.rglob("*") if p.is_file()):
        assert (tmp_path / "default" / path).read_bytes() == (demo_folds / path).read_bytes(), path  # utterances: as before


def test_speaker_holdout_takes_about_the_fraction_and_never_every_speaker():
    from types import SimpleNamespace

    from fesa.corpora.iemocap import speaker_holdout

    rows = [SimpleNamespace(utt_id=f"{s}-{i}", label="ab"[i % 2], speaker=s) for s in "ABCDEFGHIJ" for i in range(10)]
    held = speaker_holdout(rows, 0.2, 1, lambda u: u.speaker)
    assert len(held) == 20 and len({u.speaker for u in rows if u.utt_id in held}) == 2
    assert len(speaker_holdout(rows[:20], 0.9, 1, lambda u: u.speaker)) == 10  # one of two speakers at most
    assert speaker_holdout(rows, 0.2, 1, lambda u: u.speaker) == held and speaker_holdout(rows, 0.0, 1, lambda u: u.speaker) == set()
