"""The experiment config of `fesa run`: one yaml naming the data, the source model and the variant.

Keys are checked against these dataclasses before anything runs: an unknown key or a missing required path is
an error naming it. ``fesa run --print-config`` prints every key with its default.
"""

import logging
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fesa_fairseq.errors import FesaError

logger = logging.getLogger(__name__)

BOOTSTRAP = "bootstrap"


@dataclass
class LabelsConfig:
    layer: int = 9  # transformer layer clustered (the paper's best: 9)
    clusters: int = 50  # K (the paper's best: 50)
    kmeans_model: Optional[str] = None  # apply this k-means instead of learning one
    percent: float = -1.0  # share of training utterances k-means is fitted on (-1: all)


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
    corpus: Optional[str] = None  # IEMOCAP release root: the prepare stage runs on it
    manifests: Optional[str] = None  # already prepared fold folders (fold1..fold5): no prepare stage
    source_checkpoint: str = MISSING  # hubert_base_ls960.pt (or any HuBERT checkpoint), or "bootstrap"
    folds: List[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    valid_fraction: float = 0.1  # share of each label of the training sessions held out for validation (prepare)
    skip_tapt: bool = False  # fine-tune the source directly (no task-adaptive pretraining)
    tapt_labels: LabelsConfig = field(default_factory=lambda: LabelsConfig(layer=9, clusters=500))
    emotion_labels: LabelsConfig = field(default_factory=LabelsConfig)
    pooling: str = "attention"  # attention or mean
    cpt_init: str = "source"  # warm start of CPT: "source" (the authors' recipe) or "tapt"
    configs: StageConfigs = field(default_factory=StageConfigs)
    overrides: StageOverrides = field(default_factory=StageOverrides)
    device: str = "auto"  # fesa pseudo-labels and evaluate; "cpu" also hides GPUs from every stage, training included
    slurm: SlurmConfig = field(default_factory=SlurmConfig)

    @property
    def bootstrap(self) -> bool:
        return self.source_checkpoint == BOOTSTRAP


def load_experiment(path: Path, dotlist: Optional[List[str]] = None) -> ExperimentConfig:
    """Read, merge with command-line `key=value` overrides, and check; all before any stage starts."""
    try:
        user = OmegaConf.load(path)
    except (OSError, OmegaConfBaseException, yaml.YAMLError) as e:
        raise FesaError(f"cannot read experiment config {path}: {' '.join(str(e).split())}") from e
    try:
        merged = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), user, OmegaConf.from_dotlist(dotlist or []))
        cfg: ExperimentConfig = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None) or "?"
        raise FesaError(f"{path}: bad key {key!r}: {str(e).splitlines()[0]}") from e
    check_experiment(cfg, Path(path))
    return absolute_paths(cfg)


def absolute_paths(cfg: ExperimentConfig) -> ExperimentConfig:
    """Relative paths are relative to where fesa runs; stage commands (and SLURM jobs) need absolute ones."""
    def resolve(value: Optional[str]) -> Optional[str]:
        return None if value is None or value == BOOTSTRAP else str(Path(value).resolve())

    cfg.corpus, cfg.manifests, cfg.source_checkpoint = resolve(cfg.corpus), resolve(cfg.manifests), resolve(cfg.source_checkpoint) or cfg.source_checkpoint
    for labels in (cfg.tapt_labels, cfg.emotion_labels):
        labels.kmeans_model = resolve(labels.kmeans_model)
    return cfg


def check_experiment(cfg: ExperimentConfig, path: Path) -> None:
    if (cfg.corpus is None) == (cfg.manifests is None):
        raise FesaError(f"{path}: give exactly one of 'corpus' (an IEMOCAP root) and 'manifests' (prepared folds)")
    for key in ("corpus", "manifests"):
        value = getattr(cfg, key)
        if value is not None and not Path(value).is_dir():
            raise FesaError(f"{path}: '{key}' is {value}, which is not a folder")
    if cfg.manifests is not None:
        for k in cfg.folds:
            if not (Path(cfg.manifests) / f"fold{k}" / "train.tsv").is_file():
                raise FesaError(f"{path}: 'manifests' has no fold{k}/train.tsv ({cfg.manifests})")
    if not cfg.bootstrap and not Path(cfg.source_checkpoint).is_file():
        raise FesaError(f"{path}: 'source_checkpoint' {cfg.source_checkpoint} does not exist (or say 'bootstrap')")
    for key, model in (("tapt_labels.kmeans_model", cfg.tapt_labels.kmeans_model), ("emotion_labels.kmeans_model", cfg.emotion_labels.kmeans_model)):
        if model is not None and not Path(model).is_file():
            raise FesaError(f"{path}: '{key}' {model} does not exist")
    if cfg.pooling not in ("attention", "mean"):
        raise FesaError(f"{path}: 'pooling' must be attention or mean, got {cfg.pooling!r}")
    if cfg.cpt_init not in ("source", "tapt"):
        raise FesaError(f"{path}: 'cpt_init' must be source or tapt, got {cfg.cpt_init!r}")
    if cfg.bootstrap and (cfg.skip_tapt or cfg.cpt_init != "tapt"):
        raise FesaError(f"{path}: with source_checkpoint: bootstrap the TAPT model is the only pretrained model: "
                        "set cpt_init: tapt and keep skip_tapt: false")
    if cfg.skip_tapt and cfg.cpt_init == "tapt":
        raise FesaError(f"{path}: cpt_init: tapt needs the TAPT stage (skip_tapt is true)")
    if not 0 < cfg.valid_fraction < 1:
        raise FesaError(f"{path}: 'valid_fraction' must be between 0 and 1, got {cfg.valid_fraction}")
    for key, value in _strings(cfg):
        if "\n" in value or "\r" in value:
            raise FesaError(f"{path}: '{key}' holds a line break ({value!r}); each value is one line")
    bad = [k for k in cfg.folds if k not in (1, 2, 3, 4, 5)]
    if bad or not cfg.folds:
        raise FesaError(f"{path}: 'folds' must be a non-empty subset of 1..5, got {cfg.folds}")


def _strings(node: object, prefix: str = "") -> List[Tuple[str, str]]:
    """(dotted key, value) of every string in the config, list items included: all end up in shell commands."""
    if isinstance(node, str):
        return [(prefix, node)]
    if isinstance(node, list):
        return [kv for i, item in enumerate(node) for kv in _strings(item, f"{prefix}[{i}]")]
    if is_dataclass(node):
        return [kv for f in fields(node) for kv in _strings(getattr(node, f.name), f"{prefix}.{f.name}" if prefix else f.name)]
    return []


def experiment_yaml(cfg: ExperimentConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def grid_cells(grid: Dict[str, List[str]]) -> List[Dict[str, str]]:
    """layer=6,9 K=50,100 pooling=attention,mean -> every combination (layer, K, pooling)."""
    cells: List[Dict[str, str]] = [{}]
    for key, values in grid.items():
        cells = [{**cell, key: v} for cell in cells for v in values]
    return cells
