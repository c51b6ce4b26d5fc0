"""Every registered name of docs/design.md, through both ways users load the plugin."""

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


@pytest.mark.parametrize(
    "first, second, key",
    [
        ("tapt/hubert_base.yaml", "cpt/hubert_base.yaml", "mask_prob"),
        ("tapt/tiny.yaml", "cpt/tiny.yaml", "mask_prob"),
        ("finetune/hubert_base_attention.yaml", "finetune/hubert_base_mean.yaml", "pooling"),
    ],
)
def test_yaml_pairs_differ_only_in_the_key_their_header_names(first, second, key):
    from omegaconf import OmegaConf

    config = Path(fesa_fairseq.__file__).parent / "config"
    a, b = (OmegaConf.to_container(OmegaConf.load(config / name)) for name in (first, second))
    assert a["model"].pop(key) != b["model"].pop(key)
    assert a == b
    assert (
        f"As {Path(first).name if Path(first).parent == Path(second).parent else first} but for one key, model.{key}"
        in ((config / second).read_text().splitlines()[1])
    )


LAYERS = {  # docs/design.md, Layout: imports run one way, from the top down
    0: ("data", "corpora", "errors", "scoring", "statistics", "plots"),
    1: ("labels", "tasks", "models", "criterions", "pooling", "checkpoints", "checkpoint_compat", "devices", "__init__"),
    2: ("pipeline", "inference", "huggingface"),
}


def test_imports_run_one_way():
    import ast

    root = Path(fesa_fairseq.__file__).parent
    layer_of = {name: layer for layer, names in LAYERS.items() for name in names}
    wrong = []
    for path in sorted(root.rglob("*.py")):
        part = path.relative_to(root).parts[0].removesuffix(".py")
        here = layer_of[part]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fesa_fairseq."):
                target = node.module.split(".")[1]
                if layer_of[target] > here:
                    wrong.append(f"{path.relative_to(root)} imports {node.module}")
    assert not wrong, wrong


def test_no_function_is_longer_than_50_lines():
    """docs/design.md: a function does one thing and fits on a screen."""
    import ast

    root = Path(fesa_fairseq.__file__).parent.parent  # the plugin, the command line and the benchmarks
    files = [path for folder in ("fesa_fairseq", "fesa", "benchmarks") for path in sorted((root / folder).rglob("*.py"))]
    long = [
        f"{path.relative_to(root)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for path in files
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 50
    ]
    assert not long, long


def test_help_imports_neither_torch_nor_fairseq():
    """fesa --help and fesa COMMAND --help answer at once: the command line imports the plugin only to run."""
    script = (
        "import sys\n"
        "from fesa.cli import build_parser\n"
        "parser = build_parser()\n"
        "for argv in (['--help'], *([name, '--help'] for name in parser._subparsers._group_actions[0].choices)):\n"
        "    try:\n"
        "        parser.parse_args(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in ('torch', 'fairseq', 'numpy', 'fesa_fairseq') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]"
    assert "acoustic-baseline" in res.stdout and "--window WINDOW" in res.stdout  # every command's help was printed


def test_run_help_names_every_stage():
    from fesa.cli import build_parser
    from fesa.pipeline.stage import STAGE_ORDER

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    listed = run.description.split("Stages: ")[1].split(". ")[0]
    assert [name.split(" (")[0] for name in listed.split(", ")] == list(STAGE_ORDER)
