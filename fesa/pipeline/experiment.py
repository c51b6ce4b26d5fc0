"""The experiment config of `fesa run`: one yaml naming the data, the source model and the variant.

Keys are checked against these dataclasses before anything runs: an unknown key or a missing required path is
an error naming it. Every key and its default is below (ExperimentConfig); a run keeps what it ran with, every key
included, in EXP/experiment.yaml.
"""

import logging
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import fesa_fairseq
from fesa.corpora.emobox import fold_folders
from fesa.corpora.table import table_fold_count
from fesa.errors import FesaError
from fesa.options import (
    CPT_TARGETS,
    DEVICE,
    HOLDOUT,
    HoldoutOptions,
    KMeansOptions,
    PseudoLabelOptions,
    check_clusters,
    check_device_name,
    check_layer,
)
from fesa_fairseq.checkpoints import inspect_checkpoint
from fesa_fairseq.pooling import POOLING_CHOICES

logger = logging.getLogger(__name__)

BOOTSTRAP = "bootstrap"
PLUGIN = Path(fesa_fairseq.__file__).resolve().parent  # what common.user_dir names
CONFIG_ROOT = PLUGIN / "config"
HUBERT_DEFAULT_LAYERS = 12  # fairseq HubertConfig.encoder_layers, for a TAPT yaml that does not say
GRID_KEYS = ("layer", "K", "pooling", "cpt_targets")
IEMOCAP_FOLDS = (1, 2, 3, 4, 5)  # fold k tests on Session k
CORPUS_FORMATS = ("iemocap", "emobox", "table")
AUTHORS = "authors"  # protocol: TAPT, k-means and CPT on every session's audio (transductive), as the authors' code
PROTOCOLS = ("fold", AUTHORS)
SAME = "same"  # baseline_pooling: the pooling of the experiment's (first) cell
Cell = Dict[str, Union[int, str]]  # one cell of --grid: layer, K (int), pooling, cpt_targets (str); absent keys: the config's


@dataclass
class LabelsConfig:
    """A fesa pseudo-labels stage: its options' defaults and checks are that command's (options.PseudoLabelOptions)."""

    layer: int = 9  # transformer layer clustered (the paper's best: 9)
    clusters: int = 50  # K (the paper's best: 50)
    kmeans_model: Optional[str] = None  # apply this k-means instead of learning one
    percent: float = PseudoLabelOptions.percent  # share of training utterances k-means is fitted on (-1: all)
    kmeans_backend: str = KMeansOptions.backend  # faiss, or sklearn (fairseq's learn_kmeans itself)
    seed: int = PseudoLabelOptions.seed  # of k-means and of its percent sample (--seed)
    precision: str = PseudoLabelOptions.precision  # of the HuBERT feature dump (--precision; the bootstrap's MFCC has none)


@dataclass
class StageConfigs:
    tapt: str = "hubert_base"  # fesa_fairseq/config/tapt/<name>.yaml, or a path to a yaml of your own
    finetune: str = "hubert_base_attention"  # fesa_fairseq/config/finetune/<name>.yaml (both fine-tunings)
    cpt: str = "hubert_base"  # fesa_fairseq/config/cpt/<name>.yaml


@dataclass
class StageOverrides:
    tapt: List[str] = field(default_factory=list)  # extra fairseq-hydra-train overrides, e.g. "optimization.max_update=100"
    tapt_finetune: List[str] = field(default_factory=list)
    cpt: List[str] = field(default_factory=list)
    finetune: List[str] = field(default_factory=list)


@dataclass
class SlurmConfig:
    partition: Optional[str] = None
    account: Optional[str] = None
    gpus: int = 1  # GPUs per training job (fairseq's own distributed training uses them all)
    cpus_per_task: int = 8
    mem: str = "64G"
    time_train: str = "24:00:00"  # TAPT, CPT and fine-tuning jobs
    time_other: str = "04:00:00"  # labels, preparation, evaluation
    setup: List[str] = field(default_factory=list)  # shell lines run first in every job (module load, venv activation)
    sbatch_args: List[str] = field(default_factory=list)  # extra "#SBATCH" options, e.g. "--qos=high"


@dataclass
class ExperimentConfig:
    corpus: Any = None  # IEMOCAP release root, or {format: iemocap|emobox, path: ..., audio_root: ...}: the prepare stage runs on it
    manifests: Optional[str] = None  # already prepared fold folders (fold1..fold5): no prepare stage
    source_checkpoint: str = MISSING  # hubert_base_ls960.pt (or any HuBERT checkpoint), or "bootstrap"
    folds: Optional[List[int]] = None  # None: every fold the corpus has
    valid_fraction: float = HOLDOUT.valid_fraction  # share of each label of the training sessions held out for validation (prepare)
    validation: str = HOLDOUT.validation  # what that holdout draws (prepare): utterances (shares speakers with train), or whole speakers
    protocol: str = (
        "fold"  # fold: every stage sees the fold's training sessions only; authors: TAPT, k-means and CPT see every session's audio (transductive)
    )
    skip_tapt: bool = False  # fine-tune the source directly (no task-adaptive pretraining)
    tapt_labels: LabelsConfig = field(default_factory=lambda: LabelsConfig(layer=9, clusters=500))
    emotion_labels: LabelsConfig = field(default_factory=LabelsConfig)
    pooling: str = "attention"  # attention or mean
    baseline_pooling: str = SAME  # the baseline's (tapt-finetune) pooling: mean (the paper's TAPT row), attention, or same: the cells'
    cpt_init: str = "source"  # warm start of CPT: "source" (the authors' recipe) or "tapt"
    seeds: Optional[List[int]] = None  # replicate fine-tuning and CPT per seed (common.seed); None: one run at the yaml's seed
    cpt_targets: str = "clusters"  # what CPT predicts: clusters (the method), or a control: utterance, shuffled, tapt
    configs: StageConfigs = field(default_factory=StageConfigs)
    overrides: StageOverrides = field(default_factory=StageOverrides)
    segments: Optional[str] = None  # true emotion segments, fesa eder's json or utt_id start end emotion lines; None: no frame-level truth
    alignment: Optional[bool] = None  # fesa alignment of the source, TAPT and CPT models' frames; None: where segments are given
    device: str = DEVICE  # fesa pseudo-labels and evaluate; "cpu" also hides GPUs from every stage, training included
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    @property
    def bootstrap(self) -> bool:
        return self.source_checkpoint == BOOTSTRAP


@dataclass
class CorpusSpec:
    """What the prepare stage reads: an IEMOCAP release, one corpus of EmoBox's layout, or a table (a file)."""

    format: str
    path: str
    audio_root: Optional[str] = None
    drop_unmapped: bool = False  # emobox
    group: Optional[str] = None  # table: the column whose groups make the folds
    n_folds: Optional[int] = None  # table: that many folds of whole groups


CORPUS_TYPES = {"format": str, "path": str, "audio_root": str, "drop_unmapped": bool, "group": str, "n_folds": int}


def corpus_spec(corpus: Any, where: str = "'corpus'") -> Optional[CorpusSpec]:
    """``corpus:`` as a path (IEMOCAP) or a mapping, checked: known keys of their types, a known format, what the
    format needs."""
    if corpus is None:
        return None
    if isinstance(corpus, str):
        return CorpusSpec("iemocap", corpus)
    if not isinstance(corpus, dict) or set(corpus) - set(CORPUS_TYPES):
        raise FesaError(f"{where} is a path or a mapping of {', '.join(sorted(CORPUS_TYPES))}; got {corpus!r}")
    for key, value in corpus.items():
        _check_type(f"{where}.{key}", value, CORPUS_TYPES[key])
    spec = CorpusSpec(**{"format": "iemocap", **corpus})
    if spec.format not in CORPUS_FORMATS:
        raise FesaError(f"{where}.format is {spec.format!r}; give one of {', '.join(CORPUS_FORMATS)}")
    if not spec.path:
        raise FesaError(f"{where}.path is missing: the corpus folder (corpus.path=...)")
    if spec.format == "emobox" and not spec.audio_root:
        raise FesaError(f"{where}.audio_root is missing: EmoBox's wav paths are relative to it (corpus.audio_root=...)")
    if spec.n_folds is not None and spec.n_folds < 2:
        raise FesaError(f"{where}.n_folds is {spec.n_folds}; give 2 or more folds of whole groups, or leave it out")
    return spec


def _check_type(where: str, value: Any, kind: type) -> None:
    """yaml's own types: a quoted "false" is a string, which bool() would read as true (bool is an int too)."""
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        hint = "true or false, unquoted" if kind is bool else {int: "a whole number", str: "a string"}[kind]
        raise FesaError(f"{where} is {value!r}; give {hint}")


def stage_yaml(stage: str, name: str) -> Path:
    """A plugin yaml by name (fesa_fairseq/config/<stage>/<name>.yaml), or a yaml file of the user's."""
    return Path(name).resolve() if name.endswith((".yaml", ".yml")) else CONFIG_ROOT / stage / f"{name}.yaml"


def load_experiment(path: Path, dotlist: Optional[List[str]] = None, check: bool = True) -> ExperimentConfig:
    """Read, merge with command-line `key=value` overrides, and check; all before any stage starts.

    ``check=False`` reads a saved experiment as it is (fesa status), whether or not its inputs are still there."""
    try:
        user = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, yaml.YAMLError, UnicodeDecodeError, RecursionError) as e:
        raise FesaError(f"cannot read experiment config {path}: {' '.join(str(e).split())[:300]}") from e
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), user, OmegaConf.from_dotlist(dotlist or []))
        cfg: ExperimentConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise FesaError(f"{path}: bad key {key!r}: {str(e).splitlines()[0]}") from e
    if check:
        check_experiment(cfg, Path(path))
    if cfg.folds is None:
        cfg.folds = corpus_folds(cfg)
    return absolute_paths(cfg)


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Relative paths are relative to where fesa runs; stage commands (and SLURM jobs) need absolute ones."""

    def resolve(value: Optional[str]) -> Optional[str]:
        return None if value is None or value == BOOTSTRAP else str(Path(value).resolve())

    cfg.manifests, cfg.segments = resolve(cfg.manifests), resolve(cfg.segments)
    spec = corpus_spec(cfg.corpus)
    if spec is not None:  # a plain IEMOCAP path stays a path: the commands (and fingerprints) of older experiments hold
        spec = replace(spec, path=resolve(spec.path), audio_root=resolve(spec.audio_root))
        cfg.corpus = spec.path if spec.format == "iemocap" and spec.audio_root is None else asdict(spec)
    cfg.source_checkpoint = resolve(cfg.source_checkpoint) or cfg.source_checkpoint
    for labels in (cfg.tapt_labels, cfg.emotion_labels):
        labels.kmeans_model = resolve(labels.kmeans_model)
    return cfg


def check_experiment(cfg: ExperimentConfig, path: Path) -> None:
    if (cfg.corpus is None) == (cfg.manifests is None):
        raise FesaError(f"{path}: give exactly one of 'corpus' (a corpus to prepare) and 'manifests' (prepared folds)")
    spec = corpus_spec(cfg.corpus, f"{path}: 'corpus'")
    table = spec is not None and spec.format == "table"
    if table and not Path(spec.path).is_file():
        raise FesaError(f"{path}: 'corpus.path' is {spec.path}, which is not a file (a table: CSV or TSV)")
    for key, value in (
        ("corpus", None if table else spec and spec.path),
        ("manifests", cfg.manifests),
        ("corpus.audio_root", spec and spec.audio_root),
    ):
        if value is not None and not Path(value).is_dir():
            raise FesaError(f"{path}: '{key}' is {value}, which is not a folder")
    if cfg.segments is not None and not Path(cfg.segments).is_file():
        raise FesaError(f"{path}: 'segments' {cfg.segments} is not a file: name the corpus's true segments, or say segments=null for none")
    if cfg.alignment and cfg.segments is None:
        raise FesaError(f"{path}: alignment: true measures frames against true segments: name them (segments: FILE)")
    if not cfg.bootstrap and not Path(cfg.source_checkpoint).is_file():
        raise FesaError(f"{path}: 'source_checkpoint' {cfg.source_checkpoint} does not exist (or say 'bootstrap')")
    for key, model in (("tapt_labels.kmeans_model", cfg.tapt_labels.kmeans_model), ("emotion_labels.kmeans_model", cfg.emotion_labels.kmeans_model)):
        if model is not None and not Path(model).is_file():
            raise FesaError(f"{path}: '{key}' {model} does not exist")
    _check_choices(cfg, path)
    if cfg.bootstrap and (cfg.skip_tapt or cfg.cpt_init != "tapt"):
        raise FesaError(
            f"{path}: with source_checkpoint: bootstrap the TAPT model is the only pretrained model: set cpt_init: tapt and keep skip_tapt: false"
        )
    _check_targets(f"{path}: 'cpt_targets'", cfg.cpt_targets)
    if cfg.seeds is not None and (not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds) or min(cfg.seeds) < 0):
        raise FesaError(f"{path}: 'seeds' must be a list of different whole numbers >= 0, e.g. [1, 2, 3]; got {cfg.seeds}")
    if cfg.skip_tapt and cfg.cpt_init == "tapt":
        raise FesaError(f"{path}: cpt_init: tapt needs the TAPT stage (skip_tapt is true)")
    if not 0 < cfg.valid_fraction < 1:
        raise FesaError(f"{path}: 'valid_fraction' must be between 0 and 1, got {cfg.valid_fraction}")
    for key, value in _strings(cfg):
        if "\n" in value or "\r" in value:
            raise FesaError(f"{path}: '{key}' holds a line break ({value!r}); each value is one line")
    _check_folds(cfg, path)
    check_device_name(cfg.device, f"{path}: 'device'")
    for key, value in _paths(cfg):
        check_hydra_path(value, f"{path}: '{key}'")


def _check_choices(cfg: ExperimentConfig, path: Path) -> None:
    """The keys that name one of a few choices."""
    _check_pooling(f"{path}: 'pooling'", cfg.pooling)
    if cfg.baseline_pooling != SAME:
        _check_pooling(f"{path}: 'baseline_pooling' (or same)", cfg.baseline_pooling)
    if cfg.cpt_init not in ("source", "tapt"):
        raise FesaError(f"{path}: 'cpt_init' must be source or tapt, got {cfg.cpt_init!r}")
    if cfg.protocol not in PROTOCOLS:
        raise FesaError(f"{path}: 'protocol' must be fold or authors, got {cfg.protocol!r}")
    if cfg.validation not in HoldoutOptions.CHOICES["validation"]:
        raise FesaError(f"{path}: 'validation' must be utterances or speakers, got {cfg.validation!r}")
    spec = corpus_spec(cfg.corpus)
    if cfg.validation == "speakers" and (spec is None or spec.format == "emobox"):
        what = "prepared manifests have no prepare stage to split by speaker" if spec is None else "EmoBox's jsonl has no speaker field"
        raise FesaError(f"{path}: validation: speakers needs each utterance's speaker, and {what}: use validation: utterances")


def corpus_folds(cfg: ExperimentConfig) -> List[int]:
    """The folds the corpus has: IEMOCAP's five sessions, EmoBox's fold_<k> folders, or prepared fold folders."""
    spec = corpus_spec(cfg.corpus)
    if spec is not None and spec.format == "table":
        return list(range(1, table_fold_count(Path(spec.path), spec.group, spec.n_folds) + 1))
    if spec is not None and spec.format == "emobox":
        return list(fold_folders(Path(spec.path)))
    if spec is not None:
        return list(IEMOCAP_FOLDS)
    found = {d: d.name[len("fold") :] for d in Path(cfg.manifests).glob("fold*") if (d / "train.tsv").is_file()}
    zero = sorted(str(d) for d, n in found.items() if n.isdigit() and int(n) < 1)
    if zero:  # fold 0 would be planned as the stages shared by all folds
        raise FesaError(f"{zero[0]}: folds are numbered from 1 (fold 0 is not a fold): renumber the fold folders from 1")
    return sorted(int(n) for n in found.values() if n.isdigit())


def _check_folds(cfg: ExperimentConfig, path: Path) -> None:
    """The folds asked for (the yaml's or --folds) against those the corpus has; none asked for: all of them."""
    have = corpus_folds(cfg)
    if cfg.folds is None:
        cfg.folds = have
    bad = [k for k in cfg.folds if k not in have]
    if bad or not cfg.folds:
        raise FesaError(f"{path}: 'folds' (or --folds) must be a non-empty list of the corpus's folds {have}, got {cfg.folds}")


def check_hydra_path(value: str, where: str) -> None:
    """Any path reaches fairseq-hydra-train quoted (hydra.hydra_path), except ``${``, which OmegaConf would
    resolve as an interpolation inside a quoted value too."""
    if "${" in value:
        raise FesaError(f"{where} {value} holds '${{', which hydra reads as an interpolation: rename or link the path without it")


def _paths(cfg: ExperimentConfig) -> List[Tuple[str, str]]:
    spec = corpus_spec(cfg.corpus)
    values = [("manifests", cfg.manifests), ("source_checkpoint", cfg.source_checkpoint), ("segments", cfg.segments)]
    values += [("corpus", spec and spec.path), ("corpus.audio_root", spec and spec.audio_root)]
    values += [(f"{k}.kmeans_model", getattr(cfg, k).kmeans_model) for k in ("tapt_labels", "emotion_labels")]
    paths = [(k, str(Path(v).resolve())) for k, v in values if v is not None]
    return paths + [(f"configs.{f.name}", str(stage_yaml(f.name, getattr(cfg.configs, f.name)))) for f in fields(cfg.configs)]


def _strings(node: object, prefix: str = "") -> List[Tuple[str, str]]:
    """(dotted key, value) of every string in the config, list items included: all end up in shell commands."""
    if isinstance(node, str):
        return [(prefix, node)]
    if isinstance(node, list):
        return [kv for i, item in enumerate(node) for kv in _strings(item, f"{prefix}[{i}]")]
    if isinstance(node, dict):
        return [kv for key, item in node.items() for kv in _strings(item, f"{prefix}.{key}")]
    if is_dataclass(node):
        return [kv for f in fields(node) for kv in _strings(getattr(node, f.name), f"{prefix}.{f.name}" if prefix else f.name)]
    return []


def experiment_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def split_grid(items: Sequence[str]) -> Tuple[List[str], List[str]]:
    """--grid takes every word after it: the grid ends at the first word that overrides an experiment key, and the
    words from there on are overrides (``--grid pooling=attention,mean seeds=[1,2]``)."""
    keys = {f.name for f in fields(ExperimentConfig)} - set(GRID_KEYS)
    end = next((i for i, item in enumerate(items) if item.partition("=")[0].split(".")[0] in keys), len(items))
    return list(items[:end]), list(items[end:])


def parse_grid(items: Optional[Sequence[str]]) -> List[Cell]:
    """--grid layer=6,9 K=50,100 pooling=attention,mean -> every combination, each value typed and checked."""
    cells: List[Cell] = [{}]
    for item in items or []:
        key, sep, values = item.partition("=")
        if not sep or key not in GRID_KEYS or not values:
            raise FesaError(f"--grid takes NAME=v1,v2 with NAME in {', '.join(GRID_KEYS)}; got {item!r}")
        typed = [_grid_value(key, v) for v in values.split(",")]
        cells = [{**cell, key: v} for cell in cells for v in typed]
    return cells


def _grid_value(key: str, value: str) -> Union[int, str]:
    if key == "pooling":
        _check_pooling(f"--grid pooling={value}:", value)
        return value
    if key == "cpt_targets":
        _check_targets(f"--grid cpt_targets={value}:", value)
        return value
    try:
        return int(value)
    except ValueError:
        raise FesaError(f"--grid {key}={value}: {value!r} is not a whole number") from None


def _check_targets(where: str, value: str) -> None:
    if value not in CPT_TARGETS:
        raise FesaError(f"{where} must be one of {', '.join(CPT_TARGETS)}, got {value!r}")


def _check_pooling(where: str, value: str) -> None:
    if value not in POOLING_CHOICES.__members__:
        raise FesaError(f"{where} must be {' or '.join(POOLING_CHOICES.__members__)}, got {value!r}")


def model_depth(cfg: ExperimentConfig) -> Tuple[Optional[int], str]:
    """Transformer layers of the models whose layers are clustered (TAPT keeps the source's), and whence."""
    if not cfg.bootstrap:
        return inspect_checkpoint(cfg.source_checkpoint).encoder_layers, f"source_checkpoint {cfg.source_checkpoint}"
    yaml_path = stage_yaml("tapt", cfg.configs.tapt)
    layers = next((o.split("=", 1)[1] for o in reversed(cfg.overrides.tapt) if o.startswith("model.encoder_layers=")), None)
    if layers is None and yaml_path.is_file():
        layers = (OmegaConf.load(yaml_path).get("model") or {}).get("encoder_layers", HUBERT_DEFAULT_LAYERS)
    return (int(layers) if layers is not None else None), f"the TAPT model of {yaml_path}"


def check_values(cfg: ExperimentConfig, cells: Sequence[Cell], path: Path) -> None:
    """Layers within the model, and the checks of fesa pseudo-labels (K >= 2, percent, seed, precision), for the
    experiment's keys and every grid cell."""
    depth, whose = model_depth(cfg)
    layers = [("emotion_labels.layer", cfg.emotion_labels.layer)] + [("--grid layer", c["layer"]) for c in cells if "layer" in c]
    if not cfg.bootstrap and not cfg.skip_tapt:
        layers.append(("tapt_labels.layer", cfg.tapt_labels.layer))
    for key, layer in layers:
        check_layer(layer, f"{path}: '{key}'", depth, whose)
    for key, labels in (("tapt_labels", cfg.tapt_labels), ("emotion_labels", cfg.emotion_labels)):
        KMeansOptions(backend=labels.kmeans_backend).check(lambda name, key=key: f"{path}: '{key}.kmeans_{name}'")
        clusters = None if labels.kmeans_model else labels.clusters
        options = PseudoLabelOptions(clusters=clusters, percent=labels.percent, seed=labels.seed, precision=labels.precision)
        options.check(lambda name, key=key: f"{path}: '{key}.{name}'")
    for k in [c["K"] for c in cells if "K" in c]:
        check_clusters(k, f"{path}: '--grid K'")
    if cfg.protocol == AUTHORS and "utterance" in {c.get("cpt_targets", cfg.cpt_targets) for c in cells}:
        raise FesaError(f"{path}: cpt_targets utterance would put the test session's classes into CPT under protocol: authors: use protocol: fold")
    if cfg.skip_tapt and "tapt" in {c.get("cpt_targets", cfg.cpt_targets) for c in cells}:
        raise FesaError(f"{path}: cpt_targets tapt continues pretraining on the TAPT stage's labels, and skip_tapt is true")
