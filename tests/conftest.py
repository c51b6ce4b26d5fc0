import pytest


@pytest.fixture(scope="session")
def stock_hubert(tmp_path_factory):
    """A tiny HuBERT checkpoint trained for 3 updates by stock fairseq hubert_pretraining."""
    from tiny_hubert import train_stock_hubert

    return train_stock_hubert(tmp_path_factory.mktemp("stock_hubert"))


@pytest.fixture(scope="session")
def demo_folds(tmp_path_factory):
    """A small demo corpus (6 turns per speaker) prepared into folds; returns the manifests folder."""
    from fesa_fairseq.corpora.demo import make_demo_corpus
    from fesa_fairseq.corpora.iemocap import prepare_iemocap

    base = tmp_path_factory.mktemp("demo_folds")
    make_demo_corpus(base / "corpus", utterances_per_speaker=6, seed=0, progress=False)
    prepare_iemocap(base / "corpus", base / "manifests", valid_fraction=0.2, progress=False)
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
    return out
