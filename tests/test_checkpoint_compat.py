"""fairseq checkpoints load under torch >= 2.6 once the plugin is imported, and only those classes are allowed."""

import subprocess
import sys
import textwrap
from fractions import Fraction

import pytest
import torch

from tiny_hubert import to_release_format

LOAD = textwrap.dedent(
    """
    import sys, torch
    {prelude}
    from fairseq import checkpoint_utils
    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([sys.argv[1]])
    n = sum(p.numel() for p in models[0].parameters())
    print(type(models[0]).__name__, cfg.model.encoder_layers, n)
    """
)


def load_in_fresh_process(path, with_plugin: bool) -> subprocess.CompletedProcess:
    code = LOAD.format(prelude="import fesa_fairseq" if with_plugin else "")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)


@pytest.fixture(scope="module", params=["stock", "release_cfg", "release_args"])
def checkpoint(request, stock_hubert, tmp_path_factory):
    if request.param == "stock":
        return stock_hubert
    out = tmp_path_factory.mktemp("release") / f"{request.param}.pt"
    return to_release_format(stock_hubert, out, legacy_args=request.param == "release_args")


def test_torch_refuses_without_the_plugin(checkpoint):
    assert torch.__version__ >= "2.6"
    res = load_in_fresh_process(checkpoint, with_plugin=False)
    assert res.returncode != 0 and "Weights only load failed" in res.stderr


def test_loads_with_the_plugin(checkpoint, stock_hubert):
    res = load_in_fresh_process(checkpoint, with_plugin=True)
    assert res.returncode == 0, res.stderr[-3000:]
    name, layers, params = res.stdout.split()
    assert (name, layers) == ("HubertModel", "2")
    expected = sum(v.numel() for k, v in torch.load(stock_hubert, weights_only=False)["model"].items())
    assert int(params) == expected


def test_safe_loader_still_refuses_other_classes(tmp_path):
    import fesa_fairseq  # noqa: F401

    path = tmp_path / "other.pt"
    torch.save({"model": {}, "payload": Fraction(1, 3)}, path)
    with pytest.raises(Exception, match="Unsupported global: GLOBAL fractions.Fraction"):
        torch.load(path)
