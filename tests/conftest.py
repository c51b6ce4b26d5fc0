import pytest


@pytest.fixture(scope="session")
def stock_hubert(tmp_path_factory):
    """A tiny HuBERT checkpoint trained for 3 updates by stock fairseq hubert_pretraining."""
    from tiny_hubert import train_stock_hubert

    return train_stock_hubert(tmp_path_factory.mktemp("stock_hubert"))


@pytest.fixture(scope="session")
def demo_folds(tmp_path_factory):
    """A small demo corpus (6 turns per speaker) prepared into folds; returns the manifests folder."""
    from fesa_fairseq.recipes.demo_corpus import make_demo_corpus
    from fesa_fairseq.recipes.iemocap import prepare_iemocap

    base = tmp_path_factory.mktemp("demo_folds")
    make_demo_corpus(base / "corpus", utterances_per_speaker=6, seed=0, progress=False)
    prepare_iemocap(base / "corpus", base / "manifests", valid_fraction=0.2, progress=False)
    return base / "manifests"
