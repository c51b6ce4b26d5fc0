from pathlib import Path
from typing import Dict, Tuple

import pytest

# Session fixtures are built once and shared by every test: a test that changed one would make the others depend
# on the order they run in. Each is registered here and checked after every test.
SHARED: Dict[Path, Dict[str, Tuple[int, int]]] = {}


def _state(folder: Path) -> Dict[str, Tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def shared(folder: Path) -> None:
    SHARED[folder] = _state(folder)


@pytest.fixture(autouse=True)
def shared_fixtures_stay_as_built(request):
    yield
    for folder, before in SHARED.items():
        after = _state(folder)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert not changed, f"{request.node.nodeid} changed the shared fixture {folder}: {changed[:5]}"


@pytest.fixture(scope="session")
def stock_hubert(tmp_path_factory):
    """A tiny HuBERT checkpoint trained for 3 updates by stock fairseq hubert_pretraining."""
    from tiny_hubert import train_stock_hubert

    work = tmp_path_factory.mktemp("stock_hubert")
    checkpoint = train_stock_hubert(work)
    shared(work)
    return checkpoint


@pytest.fixture(scope="session")
def demo_folds(tmp_path_factory):
    """A small demo corpus (6 turns per speaker) prepared into folds; returns the manifests folder."""
    from fesa.corpora.demo import make_demo_corpus
    from fesa.corpora.iemocap import prepare_iemocap

    base = tmp_path_factory.mktemp("demo_folds")
    make_demo_corpus(base / "corpus", utterances_per_speaker=6, seed=0, progress=False)
    prepare_iemocap(base / "corpus", base / "manifests", valid_fraction=0.2, progress=False)
    shared(base)
    return base / "manifests"


@pytest.fixture(scope="session")
def finetuned_classifier(stock_hubert, demo_folds, tmp_path_factory):
    """The run folder of a tiny classifier fine-tuned (6 updates) from the stock HuBERT on demo fold 1."""
    from tiny_hubert import finetune

    run = tmp_path_factory.mktemp("finetune")
    res = finetune(
        demo_folds / "fold1", stock_hubert, run, "optimization.max_update=6", "dataset.max_tokens=480000", "common.log_interval=1"
    )  # 30 s batches: 6 updates span two epochs, so a best UA is tracked
    assert res.returncode == 0, res.stderr[-4000:]
    shared(run)
    return run


@pytest.fixture(scope="session")
def stock_labels(stock_hubert, demo_folds, tmp_path_factory):
    """fesa pseudo-labels of demo fold 1: layer 1 of the stock HuBERT, K=8, two feature shards."""
    from tiny_hubert import run_fesa

    out = tmp_path_factory.mktemp("labels") / "km"
    res = run_fesa(
        "-q",
        "pseudo-labels",
        "--manifest-dir",
        demo_folds / "fold1",
        "--checkpoint",
        stock_hubert,
        "--layer",
        "1",
        "--clusters",
        "8",
        "--out",
        out,
        "--device",
        "cpu",
        "--nshard",
        "2",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    shared(out)
    return out
