"""Every registered name of DESIGN.md that exists so far, through both ways users load the plugin."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import fesa_fairseq

PLUGIN = Path(fesa_fairseq.__file__).parent
EXPECTED = {
    "TASK_REGISTRY": ["speech_emotion_classification"],
    "MODEL_REGISTRY": ["hubert_emotion_classifier"],
    "CRITERION_REGISTRY": ["emotion_cross_entropy"],
    "POOLING_REGISTRY": ["attention", "mean"],
}
CHECK = textwrap.dedent(
    """
    import argparse, json, sys
    {load}
    from fairseq.criterions import CRITERION_REGISTRY
    from fairseq.models import MODEL_REGISTRY, MODEL_DATACLASS_REGISTRY
    from fairseq.tasks import TASK_REGISTRY, TASK_DATACLASS_REGISTRY
    from fesa_fairseq.pooling import POOLING_REGISTRY
    names = {{k: sorted(v) for k, v in dict(TASK_REGISTRY=TASK_REGISTRY, MODEL_REGISTRY=MODEL_REGISTRY,
              CRITERION_REGISTRY=CRITERION_REGISTRY, POOLING_REGISTRY=POOLING_REGISTRY).items()}}
    names["dataclasses"] = sorted(set(MODEL_DATACLASS_REGISTRY) | set(TASK_DATACLASS_REGISTRY))
    print(json.dumps(names))
    """
)


@pytest.mark.parametrize(
    "load",
    [
        f"from fairseq import utils; utils.import_user_module(argparse.Namespace(user_dir={str(PLUGIN)!r}))",
        "import fesa_fairseq",
    ],
    ids=["user_dir", "import"],
)
def test_every_name_is_registered(load):
    import json

    res = subprocess.run([sys.executable, "-c", CHECK.format(load=load)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    names = json.loads(res.stdout.strip().splitlines()[-1])
    for registry, expected in EXPECTED.items():
        assert set(expected) <= set(names[registry]), registry
    assert {"speech_emotion_classification", "hubert_emotion_classifier"} <= set(names["dataclasses"])
