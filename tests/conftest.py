import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of real fairseq training (skip with -m 'not slow')")


@pytest.fixture(scope="session")
def stock_hubert(tmp_path_factory):
    """A tiny HuBERT checkpoint trained for 3 updates by stock fairseq hubert_pretraining."""
    from tiny_hubert import train_stock_hubert

    return train_stock_hubert(tmp_path_factory.mktemp("stock_hubert"))
