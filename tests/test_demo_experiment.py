"""The demo's specifics are data of its experiment: its segment truth is the file its yaml names (segments:), which
the stages that measure frames are given as they would be any corpus's, and its folds are the corpus's."""

from pathlib import Path
from typing import List

import pytest
import yaml

from fesa.corpora.demo import DEMO_SEGMENTS_FILE
from fesa.errors import FesaError
from fesa.pipeline.experiment import load_experiment
from fesa.pipeline.plan import Plan

from emobox_fixture import make_emobox_corpus
from tiny_hubert import TINY_RUN

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo" / "experiment.yaml"
USES_TRUTH = ("evaluate", "alignment")


def plan(config: Path, tmp_path: Path, overrides: List[str]) -> Plan:
    return Plan(load_experiment(config, overrides), tmp_path / "exp", [{}])


def reference_of(command: List[str]):
    return command[command.index("--reference") + 1] if "--reference" in command else None


def check_truth_given(p: Plan, segments: Path) -> None:
    """Every stage that measures frames names the segment file, and no other stage does."""
    for stage in p.stages:
        assert reference_of(stage.command) == (str(segments.resolve()) if stage.name in USES_TRUTH else None), stage.key


def test_the_demo_names_its_segment_file(demo_folds, tmp_path):
    corpus = demo_folds.parent / "corpus"
    p = plan(DEMO, tmp_path, [f"corpus={corpus}", "alignment=true"])
    assert p.cfg.segments == str((corpus / DEMO_SEGMENTS_FILE).resolve()) and p.cfg.folds == [1, 2, 3, 4, 5]
    assert {s.fold for s in p.stages if s.name == "alignment"} == {1, 2, 3, 4, 5}
    check_truth_given(p, corpus / DEMO_SEGMENTS_FILE)
    assert not any(s.name == "alignment" for s in plan(DEMO, tmp_path, [f"corpus={corpus}"]).stages)  # the yaml's alignment: false
    bare = plan(DEMO, tmp_path, [f"corpus={corpus}", "segments=null"])
    assert not any("--reference" in s.command for s in bare.stages)  # the corpus alone is no truth
    with pytest.raises(FesaError, match="alignment: true measures frames against true segments"):
        load_experiment(DEMO, [f"corpus={corpus}", "segments=null", "alignment=true"])


@pytest.fixture
def emobox(tmp_path):
    corpus_dir, audio, rows = make_emobox_corpus(tmp_path)
    return ["corpus.format=emobox", f"corpus.path={corpus_dir}", f"corpus.audio_root={audio}"], rows


def test_another_corpus_with_a_segment_file_is_treated_alike(emobox, tmp_path):
    corpus, rows = emobox
    truth = tmp_path / "truth.tsv"
    truth.write_text("".join(f"{r['key']}\t0.1\t0.4\t{r['emo']}\n" for r in rows))
    config = tmp_path / "e.yaml"
    config.write_text(yaml.safe_dump({**{k: v for k, v in TINY_RUN.items() if k != "alignment"}, "corpus": "replaced", "segments": str(truth)}))
    p = plan(config, tmp_path, corpus)
    assert {s.fold for s in p.stages if s.name == "alignment"} == {1}  # alignment: None, and segments are given
    check_truth_given(p, truth)


def test_swapping_the_demo_corpus_takes_its_folds(emobox, tmp_path):
    corpus, _ = emobox
    p = plan(DEMO, tmp_path, [*corpus, "segments=null"])
    assert p.cfg.folds == [1, 2, 3, 4]  # the EmoBox corpus's, not the demo's five
    assert sorted({s.fold for s in p.stages if s.fold}) == [1, 2, 3, 4]
    assert p.stages[0].command[:2] == ["fesa", "prepare-emobox"]
    with pytest.raises(FesaError, match="or say segments=null for none"):  # the demo's segment file belongs to the demo
        load_experiment(DEMO, corpus)
