"""Each default and each check written once (fesa/options.py): the command line, the experiment and the Python API
read the same dataclasses, and the experiment's label keys reach the stage command."""

import inspect
from dataclasses import fields

import pytest
import yaml

from fesa.cli import build_parser
from fesa.options import (
    DEVICE,
    AlignmentOptions,
    BaselineOptions,
    ClusterGridOptions,
    ControlLabelOptions,
    DemoCorpusOptions,
    FrameOptions,
    HoldoutOptions,
    KMeansOptions,
    PretrainingCorpusOptions,
    PseudoLabelOptions,
    ScoringOptions,
    SmokeOptions,
    flag,
)
from fesa.pipeline.experiment import ExperimentConfig, LabelsConfig, load_experiment
from fesa.pipeline.plan import Plan

from cli_helpers import fesa_main, one_line_error
from tiny_hubert import TINY_RUN


def _parser(command: str):
    return build_parser()._subparsers._group_actions[0].choices[command]


def _defaults(command: str) -> dict:
    """--flag: its default, for every flag of the command."""
    return {a.option_strings[-1]: a.default for a in _parser(command)._actions if a.option_strings}


# (command, options dataclass, flag prefix): every field of the dataclass the command offers.
OFFERED = [
    ("pseudo-labels", PseudoLabelOptions, ""),
    ("pseudo-labels", KMeansOptions, "kmeans"),
    ("analyze-clusters", ClusterGridOptions, ""),
    ("alignment", AlignmentOptions, ""),
    ("control-labels", ControlLabelOptions, ""),
    ("acoustic-baseline", BaselineOptions, ""),
    ("evaluate", ScoringOptions, ""),
    ("predict", ScoringOptions, ""),
    ("predict", FrameOptions, ""),
    ("prepare-iemocap", HoldoutOptions, ""),
    ("run", SmokeOptions, "smoke"),
    ("make-demo-corpus", DemoCorpusOptions, ""),
    ("make-pretraining-corpus", PretrainingCorpusOptions, ""),
]
PARTLY = (KMeansOptions, SmokeOptions)  # offered in part: a few k-means settings; the smoke run's measuring constant


@pytest.mark.parametrize("command,options,prefix", OFFERED, ids=[f"{c}-{o.__name__}" for c, o, _ in OFFERED])
def test_the_parser_default_is_the_dataclass_default(command, options, prefix):
    defaults = _defaults(command)
    offered = {f.name: flag(f"{prefix}_{f.name}" if prefix else f.name) for f in fields(options)}
    found = {name: defaults[option] for name, option in offered.items() if option in defaults}
    assert found, f"fesa {command} offers no field of {options.__name__}"
    assert found == {name: getattr(options(), name) for name in found}
    assert set(found) == set(offered) or options in PARTLY


def test_every_device_default_is_one():
    commands = build_parser()._subparsers._group_actions[0].choices
    devices = {name: _defaults(name)["--device"] for name in commands if "--device" in _defaults(name)}
    assert len(devices) >= 5 and set(devices.values()) == {DEVICE} == {ExperimentConfig.device}


def test_the_experiments_label_keys_take_the_commands_defaults():
    labels = LabelsConfig()
    assert (labels.percent, labels.seed, labels.precision) == (PseudoLabelOptions.percent, PseudoLabelOptions.seed, PseudoLabelOptions.precision)
    assert labels.kmeans_backend == KMeansOptions.backend


def _api_defaults():
    from fesa.corpora.demo import make_demo_corpus, make_pretraining_corpus
    from fesa.inference.recognizer import EmotionRecognizer
    from fesa.labels.alignment import measure_alignment
    from fesa.labels.analyze_clusters import analyze_clusters
    from fesa.labels.control_labels import make_control_labels
    from fesa.labels.pseudo_labels import PseudoLabelJob
    from fesa.labels.readers import HubertFeatureReader
    from fesa.pipeline.evaluate import evaluate
    from fesa.pipeline.reference import reference

    # (function, its parameter, the command, its flag)
    return [
        (HubertFeatureReader.__init__, "precision", "pseudo-labels", "--precision"),
        (HubertFeatureReader.__init__, "max_chunk", "pseudo-labels", "--max-chunk"),
        (PseudoLabelJob, "percent", "pseudo-labels", "--percent"),
        (PseudoLabelJob, "seed", "pseudo-labels", "--seed"),
        (analyze_clusters, "max_utterances", "analyze-clusters", "--max-utterances"),
        (analyze_clusters, "seed", "analyze-clusters", "--seed"),
        (measure_alignment, "clusters", "alignment", "--clusters"),
        (measure_alignment, "max_utterances", "alignment", "--max-utterances"),
        (measure_alignment, "seed", "alignment", "--seed"),
        (make_control_labels, "seed", "control-labels", "--seed"),
        (reference, "seed", "acoustic-baseline", "--seed"),
        (evaluate, "precision", "evaluate", "--precision"),
        (evaluate, "device", "evaluate", "--device"),
        (evaluate, "batch_seconds", "evaluate", "--batch-seconds"),
        (EmotionRecognizer.from_checkpoint, "precision", "predict", "--precision"),
        (EmotionRecognizer.from_checkpoint, "device", "predict", "--device"),
        (make_demo_corpus, "utterances_per_speaker", "make-demo-corpus", "--utterances-per-speaker"),
        (make_demo_corpus, "seed", "make-demo-corpus", "--seed"),
        (make_pretraining_corpus, "speakers", "make-pretraining-corpus", "--speakers"),
        (make_pretraining_corpus, "seed", "make-pretraining-corpus", "--seed"),
    ]


def test_the_python_api_defaults_are_the_command_lines():
    for function, parameter, command, option in _api_defaults():
        api = inspect.signature(function).parameters[parameter].default
        assert api == _defaults(command)[option], (function.__qualname__, parameter, command)


def test_the_feature_reader_takes_precision_names_and_dumps_in_auto_by_default(stock_hubert):
    import torch

    from fesa.devices import resolve_precision
    from fesa.labels.readers import HubertFeatureReader

    cpu = torch.device("cpu")
    assert HubertFeatureReader(str(stock_hubert), 1, cpu).precision == resolve_precision("auto", cpu)
    assert HubertFeatureReader(str(stock_hubert), 1, cpu, precision="fp32").precision is None


# The experiment's label keys: checked as the command checks them, passed to the stage command when set.


@pytest.fixture
def experiment(demo_folds, tmp_path):
    def write(**labels):
        path = tmp_path / "exp.yaml"
        cfg = {**TINY_RUN, "manifests": str(demo_folds), "source_checkpoint": "bootstrap"}
        for key, extra in labels.items():
            cfg[key] = {**cfg[key], **extra}
        path.write_text(yaml.safe_dump(cfg))
        return path

    return write


def _label_commands(path, exp):
    plan = Plan(load_experiment(path), exp, [{}])
    return {s.name: s.command for s in plan.stages if s.name in ("tapt-labels", "emotion-labels")}


def _without(command, option, value):
    i = command.index(option)
    assert command[i + 1] == value
    return command[:i] + command[i + 2 :]


def test_the_label_seed_and_precision_reach_the_pseudo_labels_command(experiment, tmp_path):
    defaults = _label_commands(experiment(), tmp_path / "exp")
    assert not any(option in command for command in defaults.values() for option in ("--seed", "--precision"))  # as before these keys
    changed = _label_commands(experiment(tapt_labels={"seed": 3}, emotion_labels={"seed": 4, "precision": "fp32"}), tmp_path / "exp")
    assert _without(changed["tapt-labels"], "--seed", "3") == defaults["tapt-labels"]  # the bootstrap's MFCC: no precision
    assert _without(_without(changed["emotion-labels"], "--seed", "4"), "--precision", "fp32") == defaults["emotion-labels"]
    args = build_parser().parse_args(changed["emotion-labels"][1:])
    assert (args.seed, args.precision) == (4, "fp32")


@pytest.mark.parametrize(
    "labels,message",
    [
        ({"emotion_labels": {"precision": "fp64"}}, "'emotion_labels.precision' is 'fp64'; choose one of auto, fp32, bf16, fp16"),
        ({"tapt_labels": {"seed": -1}}, "'tapt_labels.seed' is -1; give a whole number from 0"),
        ({"tapt_labels": {"kmeans_backend": "scipy"}}, "'tapt_labels.kmeans_backend' is 'scipy'; choose faiss or sklearn"),
    ],
)
def test_the_label_keys_are_checked_as_the_command_checks_them(experiment, tmp_path, capsys, labels, message):
    res = fesa_main(capsys, "run", experiment(**labels), "--exp-dir", tmp_path / "exp", "--dry-run")
    one_line_error(res, message)
    assert not (tmp_path / "exp").exists()
