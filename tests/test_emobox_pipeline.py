"""fesa run on a corpus in EmoBox's layout: the demo corpus described by its EmoBox listing, with five classes."""

import json
import re
import shutil

import pytest
import yaml

from fesa.corpora.demo import make_demo_corpus
from fesa.corpora.emobox import export_listing

from tiny_hubert import TINY_RUN, run_fesa

FIVE = {"neu": "neu", "hap": "hap", "exc": "exc", "ang": "ang", "sad": "sad"}


@pytest.fixture(scope="module")
def listing(tmp_path_factory):
    base = tmp_path_factory.mktemp("emobox_demo")
    make_demo_corpus(base / "corpus", utterances_per_speaker=10, seed=2, progress=False)
    info = export_listing(base / "corpus", base / "listing")
    return base, info


def test_the_demo_listing_prepares_like_the_demo(listing, tmp_path):
    base, info = listing
    res = run_fesa("-q", "prepare-emobox", info["dir"], tmp_path / "m", "--audio-root", base / "corpus")
    assert res.returncode == 0, res.stderr[-2000:]
    ours = json.loads((tmp_path / "m" / "prepare.json").read_text())
    assert ours["classes"] == ["ang", "hap", "neu", "sad"] and ours["utterances"] == info["utterances"]
    iemocap = run_fesa("-q", "prepare-iemocap", base / "corpus", tmp_path / "i")
    assert iemocap.returncode == 0
    for k in range(1, 6):  # the same test sessions, the same labels
        a = sorted((tmp_path / "m" / f"fold{k}" / "test.emo").read_text().split())
        b = sorted((tmp_path / "i" / f"fold{k}" / "test.emo").read_text().split())
        assert a == b


def test_the_corpus_mapping_on_the_command_line_replaces_a_plain_path(listing, tmp_path):
    base, info = listing
    config = tmp_path / "e.yaml"
    config.write_text(yaml.safe_dump({"corpus": "somewhere/else", **{k: v for k, v in TINY_RUN.items() if k != "folds"}}))
    res = run_fesa(
        "run",
        config,
        "--exp-dir",
        tmp_path / "exp",
        "--dry-run",
        "corpus.format=emobox",
        f"corpus.path={info['dir']}",
        f"corpus.audio_root={base / 'corpus'}",
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"fesa prepare-emobox {info['dir']} {tmp_path / 'exp' / 'manifests'} --audio-root {base / 'corpus'}" in res.stdout
    assert sorted(set(re.findall(r"# fold(\d)/", res.stdout))) == ["1", "2", "3", "4", "5"]  # every fold it has
    res = run_fesa("run", config, "--exp-dir", tmp_path / "exp", "--dry-run", "corpus.format=emobox", f"corpus.path={info['dir']}")
    assert res.returncode == 2 and "'corpus'.audio_root is missing" in res.stderr


@pytest.mark.slow
def test_the_whole_method_on_five_classes(listing, tmp_path):
    base, info = listing
    five = tmp_path / "five" / "demo"  # EmoBox names a corpus folder after its listing
    shutil.copytree(info["dir"], five)
    (five / "label_map.json").write_text(json.dumps(FIVE))
    config = tmp_path / "e.yaml"
    run = {k: v for k, v in TINY_RUN.items() if k != "folds"}
    config.write_text(yaml.safe_dump({**run, "corpus": {"format": "emobox", "path": str(five), "audio_root": str(base / "corpus")}}))
    res = run_fesa("run", config, "--exp-dir", tmp_path / "exp")
    assert res.returncode == 0, res.stderr[-5000:]
    report = json.loads((tmp_path / "exp" / "report" / "report.json").read_text())
    assert report["baseline"]["folds"] == [1, 2, 3, 4, 5] and report["baseline"]["labels"] == ["ang", "exc", "hap", "neu", "sad"]
    assert len(report["L1-K6-attention"]["confusion"]) == 5 and "macro_f1_mean" in report["baseline"]
    assert f"Corpus: emobox {five}; 5 classes: ang, exc, hap, neu, sad." in res.stdout
    rows = [line for line in res.stdout.splitlines() if line.startswith("| ")]
    assert rows[0].endswith("| mean UA | mean WA | mean macro-F1 |") and rows[1].startswith("| acoustic reference")
