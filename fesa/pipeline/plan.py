"""The method, fold by fold, as a list of stages; each stage is the very command a user could type.

    prepare -> reference -> tapt-labels -> tapt -> tapt-finetune -> emotion-labels -> cpt -> finetune -> evaluate
    (and alignment of the source, TAPT and CPT models wherever segment truth exists)

Layout of an experiment folder::

    EXP/manifests/fold{k}/...                 prepare (or the experiment's own manifests)
    EXP/fold{k}/tapt-labels/                  {train,valid}.km of the source model (MFCC when bootstrapping)
    EXP/fold{k}/tapt/                         fairseq run folder (checkpoints/, tblog/, hydra_train.log)
    EXP/fold{k}/tapt-finetune/                the paper's TAPT baseline
    EXP/fold{k}/emotion-labels/L{l}-K{k}/     pseudo-emotion labels of layer l of the fine-tuned TAPT model
    EXP/fold{k}/cpt/L{l}-K{k}/                continued pretraining on them
    EXP/fold{k}/finetune/L{l}-K{k}-{pooling}/ the method
    EXP/fold{k}/evaluate/{reference,baseline,L{l}-K{k}-{pooling}}/  metrics.json, predictions.tsv, confusion.png
    EXP/fold{k}/alignment/{source,tapt,cpt}-.../  fesa alignment of a pretrained model at the cell's layer and K

Controls (cpt_targets) add emotion-labels/L{l}-K{k}-{utterance,shuffled} and cpt/tapt-units, and their cells are
named after them (L{l}-K{k}-shuffled-{pooling}, tapt-units-{pooling}); seeds add -s{seed} to tapt-finetune, cpt,
finetune and evaluate folders.
    EXP/logs/                                 one log per stage run

A stage's stamp (``.fesa-stage.json``) holds the fingerprint of its command, of the yaml that command reads and of
the stamps of the stages it reads. It is written when the stage starts (state "started") and again when it
succeeds (state "complete"). A complete stage with the current fingerprint is skipped. A started stage with the
current fingerprint (it was interrupted) runs again in place, so its resumable work is reused: fairseq's
checkpoint_last.pt, the feature shards of fesa pseudo-labels. Any other output (another fingerprint, complete
or not, or a folder without a stamp) is moved aside to ``<dir>.stale-<time>``, never deleted, and the stage
runs afresh.
"""

import hashlib
import json
import logging
import re
import shlex
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fesa.corpora.demo import find_demo_root, is_demo_corpus
from fesa.corpora.table import corpus_fingerprint_files
from fesa.errors import FesaError
from fesa.files import STAGE_STAMP, atomic_write_text
from fesa.labels.alignment import ALIGNMENT_FILE
from fesa.options import PseudoLabelOptions, flag
from fesa.pipeline.distributed import distributed_overrides
from fesa.pipeline.experiment import PLUGIN, Cell, CorpusSpec, ExperimentConfig, check_hydra_path, corpus_spec, stage_yaml

logger = logging.getLogger(__name__)

STAGE_ORDER = ("prepare", "reference", "tapt-labels", "tapt", "tapt-finetune", "emotion-labels", "cpt", "finetune", "evaluate", "alignment")
STAMP = STAGE_STAMP
BEST = Path("checkpoints") / "checkpoint_best.pt"
DAMAGED = "damaged"  # the state of a stamp that is not the json a stage wrote
STALE = ".stale-"  # <dir>.stale-<time>: a stage's old output, moved aside when its command or inputs changed
TAPT_UNITS = "tapt-units"  # the control of cpt_targets: tapt, CPT on the TAPT stage's own labels
REFERENCE = "reference"  # EXP/fold{k}/evaluate/reference: the acoustic reference, scored like every model


@dataclass
class Stage:
    name: str
    fold: Optional[int]
    variant: str
    out_dir: Path
    command: List[str]
    done: Path  # written by the command when it succeeded
    deps: List["Stage"] = field(default_factory=list)
    training: bool = False  # a fairseq-hydra-train job (a GPU job on SLURM)
    env: Dict[str, str] = field(default_factory=dict)  # set for the command on top of fesa's own environment
    data: List[Path] = field(default_factory=list)  # files whose content the command reads (a table, a corpus listing)

    @property
    def key(self) -> str:
        parts = [f"fold{self.fold}" if self.fold else "all", self.name] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    @property
    def file_stem(self) -> str:
        """The key as one file name: its local log (local_log) and its SLURM script."""
        return self.key.replace("/", "__")

    @property
    def lock(self) -> Path:
        """Held by whoever runs the stage: a local fesa run or its SLURM job."""
        return self.out_dir.with_name(f".{self.out_dir.name}.lock")

    @property
    def stamp(self) -> Path:
        return self.out_dir / STAMP

    def fingerprint(self) -> Optional[str]:
        """None while an input stage is incomplete. Covers the command, the yaml it names and its input stages."""
        dep_stamps = []
        for dep in self.deps:
            if not dep.stamp.is_file():
                return None
            dep_stamps.append(hashlib.sha256(dep.stamp.read_bytes()).hexdigest())
        configs = [hashlib.sha256(path.read_bytes()).hexdigest() for path in _config_files(self.command)]
        return hashlib.sha256(json.dumps({"command": self.command, "inputs": dep_stamps, "configs": configs}).encode()).hexdigest()

    def data_digest(self) -> Optional[str]:
        """The content of the data files the command reads (a table, a corpus listing), recorded beside the
        fingerprint rather than in it: stamps written before it was recorded stay valid, so a release that starts
        recording it does not make existing experiments run again."""
        if not self.data:
            return None
        return hashlib.sha256(json.dumps([[str(path), _content(path)] for path in self.data]).encode()).hexdigest()

    def recorded(self) -> Optional[dict]:
        """The stamp; one that cannot be read is {"state": "damaged"}: its output's origin is unknown (stale)."""
        if not self.stamp.is_file():
            return None
        try:
            stamp = json.loads(self.stamp.read_text(encoding="utf-8"))
        except (ValueError, OSError):
            return {"state": DAMAGED}
        return stamp if isinstance(stamp, dict) else {"state": DAMAGED}

    def status(self) -> str:
        """'complete'; 'partial' (started under this very fingerprint, then stopped: resumable in place); 'stale'
        (output from another command or other inputs, or of unknown origin: moved aside before running); 'todo'."""
        stamp = self.recorded()
        if stamp is None:
            return "stale" if self.out_dir.exists() and any(self.out_dir.iterdir()) else "todo"
        digest = self.data_digest()
        same = stamp.get("fingerprint") == self.fingerprint() and stamp.get("data", digest) == digest
        if stamp.get("state") == "started":
            return "partial" if same else "stale"
        return "complete" if same and self.done.exists() else "stale"

    def _data_record(self) -> Dict[str, str]:
        digest = self.data_digest()
        return {} if digest is None else {"data": digest}

    def mark_started(self) -> None:
        """Written before the command runs, so that a crash leaves the identity of its partial work behind."""
        stamp = {
            "stage": self.key,
            "state": "started",
            "fingerprint": self.fingerprint(),
            **self._data_record(),
            "command": self.command,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        atomic_write_text(self.stamp, json.dumps(stamp, indent=2) + "\n")

    def mark_complete(self, seconds: float) -> None:
        stamp = {
            "stage": self.key,
            "state": "complete",
            "fingerprint": self.fingerprint(),
            **self._data_record(),
            "command": self.command,
            "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        atomic_write_text(self.stamp, json.dumps(stamp, indent=2) + "\n")


def _content(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _config_files(command: Sequence[str]) -> List[Path]:
    """The yaml a fairseq-hydra-train command reads: editing it changes the stage as much as an override does."""
    if "--config-dir" not in command or "--config-name" not in command:
        return []
    folder, name = command[command.index("--config-dir") + 1], command[command.index("--config-name") + 1]
    path = Path(folder) / f"{name}.yaml"
    if not path.is_file():
        raise FesaError(f"no config {path} (configs.<stage> names a yaml of fesa_fairseq/config/<stage>/ or a path)")
    return [path]


def _config(stage: str, name: str) -> List[str]:
    path = stage_yaml(stage, name)
    return ["--config-dir", str(path.parent), "--config-name", path.stem]


def _check_outside(manifests: Path, spec: CorpusSpec) -> None:
    """The prepare stage may not write inside its corpus (data/files.check_apart): said when the plan is made, not
    when the stage runs, naming the folder the user may not have given (a table's audio root is its folder)."""
    root = spec.audio_root or (str(Path(spec.path).parent) if spec.format == "table" else spec.path)
    if Path(root).resolve() in Path(manifests).resolve().parents:
        what = "its audio root (corpus.audio_root; a table's own folder when not given)" if spec.format != "iemocap" else "the corpus"
        raise FesaError(f"the experiment folder's manifests {manifests} would lie inside {root}, {what}: give --exp-dir outside it")


def _corpus_description(spec: CorpusSpec) -> List[Path]:
    """The files that describe a table or EmoBox corpus to prepare: editing one changes what prepare writes. An
    IEMOCAP release is fixed once published, and hashing its label files would make existing experiments run again."""
    return corpus_fingerprint_files(spec.format, Path(spec.path)) if spec.format in ("table", "emobox") else []


def hydra_train(stage: str, config: str, run_dir: Path, overrides: Sequence[str]) -> List[str]:
    return ["fairseq-hydra-train", *_config(stage, config), hydra_path("common.user_dir", PLUGIN), hydra_path("hydra.run.dir", run_dir), *overrides]


_HYDRA_PLAIN = re.compile(r"[\w./:@+~%-]+", re.ASCII)


def hydra_path(key: str, value: object) -> str:
    """``key=value`` for a hydra override, the value quoted where hydra's grammar would read more into it (a comma
    is a sweep; spaces, quotes, ``;``, brackets and non-ASCII letters are errors). In hydra's quoted strings only
    backslashes before a quote are escapes: those are doubled, and quotes escaped. Plain paths stay unquoted, so
    the commands (and the stage fingerprints) of existing experiments do not change."""
    text = str(value)
    if _HYDRA_PLAIN.fullmatch(text):
        return f"{key}={text}"
    quoted = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"{key}='{quoted}'"


def fesa(*args: object) -> List[str]:
    return ["fesa", *(str(a) for a in args)]


def _changed(labels, names: Sequence[str]) -> List[str]:
    """The flags of fesa pseudo-labels' options the experiment sets away from their defaults. Defaults are left out,
    so the commands (and stage fingerprints) of experiments written before these keys existed stay as they were."""
    return [arg for name in names if getattr(labels, name) != getattr(PseudoLabelOptions, name) for arg in (flag(name), str(getattr(labels, name)))]


def _labels_args(labels, source: str) -> List[str]:
    changed = _changed(labels, ("precision",) if labels.kmeans_model else ("seed", "precision"))
    if labels.kmeans_model:
        return ["--checkpoint", source, "--layer", str(labels.layer), "--kmeans-model", labels.kmeans_model, *changed]
    return [
        "--checkpoint",
        source,
        "--layer",
        str(labels.layer),
        "--clusters",
        str(labels.clusters),
        "--percent",
        str(labels.percent),
        "--kmeans-backend",
        labels.kmeans_backend,
        *changed,
    ]


def seed_suffix(seed: Optional[int]) -> str:
    """-s{seed} on the folder and result names of a replicated stage; nothing without seeds (names unchanged)."""
    return "" if seed is None else f"-s{seed}"


def seed_override(seed: Optional[int]) -> List[str]:
    return [] if seed is None else [f"common.seed={seed}"]


def fesa_stage(*, name: str, fold: Optional[int], out: Path, args: Sequence[object], done: Path, variant: str = "", deps=(), data=()) -> Stage:
    """A stage that runs a fesa command: what it writes (``out``, and ``done`` last), what it reads (``deps``, and the
    files of ``data``)."""
    return Stage(name=name, fold=fold, variant=variant, out_dir=out, command=fesa(*args), done=done, deps=list(deps), data=list(data))


def training_stage(
    *, name: str, fold: int, group: str, config: str, out: Path, overrides: Sequence[str], variant: str = "", deps=(), gpus: int = 1
) -> Stage:
    """A fairseq-hydra-train run of the plugin yaml ``group/config`` (a GPU job on SLURM); done at its best checkpoint.
    On ``gpus`` > 1, fairseq's distributed training with the yaml's batch per step (pipeline/distributed.py)."""
    command = hydra_train(group, config, out, [*distributed_overrides(stage_yaml(group, config), gpus, overrides), *overrides])
    return Stage(name=name, fold=fold, variant=variant, out_dir=out, command=command, done=out / BEST, deps=list(deps), training=True)


def labels_stage(*, name: str, fold: int, data: Path, out: Path, how: Sequence[str], device: str, variant: str = "", deps=()) -> Stage:
    """fesa pseudo-labels of the fold's train and valid splits (never test), ``how`` naming features and k-means."""
    args = ("pseudo-labels", "--manifest-dir", data, "--splits", "train,valid", "--out", out, *how, "--device", device)
    return fesa_stage(name=name, fold=fold, variant=variant, out=out, args=args, done=out / "labels.json", deps=deps)


class Plan:
    """Every stage of an experiment (and, for a grid, of every cell), sharing what cells have in common."""

    def __init__(self, cfg: ExperimentConfig, exp_dir: Path, cells: Sequence[Cell]) -> None:
        self.cfg, self.exp, self.cells = cfg, exp_dir.resolve(), list(cells)
        self.gpus = 0 if cfg.device == "cpu" else cfg.slurm.gpus  # GPUs of a training job: fairseq's world size
        check_hydra_path(str(self.exp), "--exp-dir")
        self.stages: List[Stage] = []
        self.tapt_labels: Dict[int, Stage] = {}
        self.tapt: Dict[int, Stage] = {}
        self.source = None if cfg.bootstrap else str(Path(cfg.source_checkpoint).resolve())
        self.manifests = Path(cfg.manifests).resolve() if cfg.manifests else self.exp / "manifests"
        prepare = self._prepare() if cfg.corpus else None
        for k in cfg.folds:
            self._plan_fold(k, [prepare] if prepare else [], cells)
        if cfg.device == "cpu":
            # Hidden rather than common.cpu=true: on a machine with a GPU, fairseq's clip_grad_norm_ puts the
            # gradient norm on CUDA even then, and the first update fails (docs/fairseq-notes.md).
            for stage in self.stages:
                stage.env["CUDA_VISIBLE_DEVICES"] = ""

    def _add(self, stage: Stage) -> Stage:
        existing = next((s for s in self.stages if s.key == stage.key), None)
        if existing is None:
            self.stages.append(stage)
            return stage
        return existing

    def _prepare(self) -> Stage:
        spec = corpus_spec(self.cfg.corpus)
        data = _corpus_description(spec)
        _check_outside(self.manifests, spec)
        if spec.format == "emobox":
            args = ("prepare-emobox", spec.path, self.manifests, "--audio-root", spec.audio_root, "--valid-fraction", self.cfg.valid_fraction)
            args += ("--overwrite",) + (("--drop-unmapped",) if spec.drop_unmapped else ())
        elif spec.format == "table":
            args = ("prepare-table", spec.path, self.manifests, "--valid-fraction", self.cfg.valid_fraction, "--overwrite")
            args += ("--audio-root", spec.audio_root) if spec.audio_root else ()
            args += (("--group", spec.group) if spec.group else ()) + (("--folds", spec.n_folds) if spec.n_folds else ())
        else:
            args = ("prepare-iemocap", Path(spec.path).resolve(), self.manifests, "--valid-fraction", self.cfg.valid_fraction, "--overwrite")
        return self._add(fesa_stage(name="prepare", fold=None, out=self.manifests, args=args, done=self.manifests / "prepare.json", data=data))

    def _plan_fold(self, k: int, deps: List[Stage], cells: Sequence[Cell]) -> None:
        data = self.manifests / f"fold{k}"
        out = self.exp / f"fold{k}" / "evaluate" / REFERENCE
        args = ("-q", "acoustic-baseline", data, "--split", "test", "--out", out)
        self._add(fesa_stage(name="reference", fold=k, out=out, args=args, done=out / "metrics.json", deps=deps))
        source = self.source
        pretrained = source
        if not self.cfg.skip_tapt:
            tapt = self._tapt(k, data, source, deps)
            pretrained, deps = str(tapt.done), [tapt]
        seeds = self.cfg.seeds or [None]
        baselines = [self._baseline(k, data, pretrained, cells[0].get("pooling", self.cfg.pooling), deps, seed) for seed in seeds]
        for seed, baseline in zip(seeds, baselines):
            self._evaluate(k, "baseline" + seed_suffix(seed), baseline, data)
        for cell in cells:  # the labels come from the first seed's baseline and are shared by every seed
            for seed in seeds:
                self._cell(k, data, cell, baselines[0], source if self.cfg.cpt_init == "source" else pretrained, deps, seed)

    def _tapt(self, k: int, data: Path, source: Optional[str], deps: List[Stage]) -> Stage:
        cfg, fold_dir = self.cfg, self.exp / f"fold{k}"
        mfcc = ["--features", "mfcc", "--clusters", str(cfg.tapt_labels.clusters), "--kmeans-backend", cfg.tapt_labels.kmeans_backend]
        mfcc += _changed(cfg.tapt_labels, ("seed",))
        how = mfcc if cfg.bootstrap else _labels_args(cfg.tapt_labels, source)
        labels = self._add(labels_stage(name="tapt-labels", fold=k, data=data, out=fold_dir / "tapt-labels", how=how, device=cfg.device, deps=deps))
        self.tapt_labels[k] = labels
        init = ["model.init_checkpoint=null", "model.label_rate=100"] if cfg.bootstrap else [hydra_path("model.init_checkpoint", source)]
        overrides = [hydra_path("task.data", data), hydra_path("task.label_dir", labels.out_dir), *init, *cfg.overrides.tapt]
        self.tapt[k] = self._add(
            training_stage(
                name="tapt", fold=k, group="tapt", config=cfg.configs.tapt, out=fold_dir / "tapt", overrides=overrides, deps=[labels], gpus=self.gpus
            )
        )
        return self.tapt[k]

    def _baseline(self, k: int, data: Path, pretrained: str, pooling: str, deps: List[Stage], seed: Optional[int]) -> Stage:
        out = self.exp / f"fold{k}" / ("tapt-finetune" + seed_suffix(seed))
        overrides = [
            hydra_path("task.data", data),
            hydra_path("model.w2v_path", pretrained),
            f"model.pooling={pooling}",
            *self.cfg.overrides.tapt_finetune,
            *seed_override(seed),
        ]
        config, variant = self.cfg.configs.finetune, seed_suffix(seed)[1:]
        return self._add(
            training_stage(
                name="tapt-finetune",
                fold=k,
                variant=variant,
                group="finetune",
                config=config,
                out=out,
                overrides=overrides,
                deps=deps,
                gpus=self.gpus,
            )
        )

    def _cell(self, k: int, data: Path, cell: Cell, baseline: Stage, init_from: Optional[str], tapt_deps: List[Stage], seed: Optional[int]) -> None:
        """One cell of the grid: the CPT targets of its layer, K and target kind, continued pretraining on them,
        fine-tuning with its pooling, scoring; with seeds, CPT onwards once per seed."""
        cfg, fold_dir = self.cfg, self.exp / f"fold{k}"
        labels, labels_name = self._cpt_labels(k, data, cell, baseline)
        name = labels_name + seed_suffix(seed)
        overrides = [hydra_path("task.data", data), hydra_path("task.label_dir", labels.out_dir), hydra_path("model.init_checkpoint", init_from)]
        if cfg.bootstrap and labels_name == TAPT_UNITS:
            overrides.append("model.label_rate=100")  # the bootstrap's TAPT labels are MFCC frames, 100 a second
        overrides += cfg.overrides.cpt + seed_override(seed)
        deps = [labels] + (tapt_deps if cfg.cpt_init == "tapt" else [])
        out = fold_dir / "cpt" / name
        cpt = self._add(
            training_stage(
                name="cpt", fold=k, variant=name, group="cpt", config=cfg.configs.cpt, out=out, overrides=overrides, deps=deps, gpus=self.gpus
            )
        )
        if seed == (cfg.seeds or [None])[0]:  # the first seed's CPT model stands for the others
            self._alignments(k, data, cell, labels_name, cpt)
        pooling = cell.get("pooling", cfg.pooling)
        variant = f"{labels_name}-{pooling}{seed_suffix(seed)}"
        overrides = [hydra_path("task.data", data), hydra_path("model.w2v_path", cpt.done), f"model.pooling={pooling}"]
        overrides += cfg.overrides.finetune + seed_override(seed)
        out = fold_dir / "finetune" / variant
        method = self._add(
            training_stage(
                name="finetune",
                fold=k,
                variant=variant,
                group="finetune",
                config=cfg.configs.finetune,
                out=out,
                overrides=overrides,
                deps=[cpt],
                gpus=self.gpus,
            )
        )
        self._evaluate(k, variant, method, data)

    def _layer_k(self, cell: Cell) -> Tuple[int, int]:
        """The layer clustered and K of a cell: its own, else the experiment's emotion_labels."""
        return int(cell.get("layer", self.cfg.emotion_labels.layer)), int(cell.get("K", self.cfg.emotion_labels.clusters))

    def _cpt_labels(self, k: int, data: Path, cell: Cell, baseline: Stage) -> Tuple[Stage, str]:
        """The labels CPT predicts in this cell, and the cell's name: the method's clusters of layer l (L{l}-K{k}),
        a control made from them (L{l}-K{k}-utterance, -shuffled), or the TAPT stage's own units (tapt-units)."""
        cfg, fold_dir = self.cfg, self.exp / f"fold{k}"
        target = cell.get("cpt_targets", cfg.cpt_targets)
        if target == "tapt":
            return self.tapt_labels[k], TAPT_UNITS
        layer, clusters = self._layer_k(cell)
        lk = f"L{layer}-K{clusters}"
        how = _labels_args(replace(cfg.emotion_labels, layer=layer, clusters=clusters), str(baseline.done))
        out = fold_dir / "emotion-labels" / lk
        labels = self._add(labels_stage(name="emotion-labels", fold=k, variant=lk, data=data, out=out, how=how, device=cfg.device, deps=[baseline]))
        if target == "clusters":
            return labels, lk
        name = f"{lk}-{target}"
        out = fold_dir / "emotion-labels" / name
        args = ("control-labels", labels.out_dir, "--kind", target, "--manifest-dir", data, "--out", out, "--overwrite")
        return self._add(fesa_stage(name="emotion-labels", fold=k, variant=name, out=out, args=args, done=out / "labels.json", deps=[labels])), name

    def _alignments(self, k: int, data: Path, cell: Cell, name: str, cpt: Stage) -> None:
        """fesa alignment at the cell's layer and K of the models before CPT (source, TAPT) and after it."""
        if not self.truth(k):
            return
        layer, clusters = self._layer_k(cell)
        lk = f"L{layer}-K{clusters}"
        models = [("cpt-" + (name if name.startswith(lk) else f"{name}-{lk}"), str(cpt.done), [cpt])]
        if k in self.tapt:
            models.append((f"tapt-{lk}", str(self.tapt[k].done), [self.tapt[k]]))
        if self.source:
            models.append((f"source-{lk}", self.source, [s for s in self.stages if s.name == "prepare"]))
        for variant, model, needs in models:
            out = self.exp / f"fold{k}" / "alignment" / variant
            args = ("-q", "alignment", model, data, "--layer", layer, "--clusters", clusters, "--out", out, "--device", self.cfg.device)
            args += ("--reference", self.cfg.segments) if self.cfg.segments else ()
            self._add(fesa_stage(name="alignment", fold=k, variant=variant, out=out, args=args, done=out / ALIGNMENT_FILE, deps=needs))

    def truth(self, k: int) -> bool:
        """Whether the fold's test utterances have true segments, and the experiment wants its alignment measured."""
        if self.cfg.alignment is False:
            return False
        if self.cfg.segments:
            return True
        test = self.manifests / f"fold{k}" / "test.tsv"
        spec = corpus_spec(self.cfg.corpus)
        if spec is not None:
            return spec.format == "iemocap" and is_demo_corpus(Path(spec.path))
        return test.is_file() and find_demo_root(test) is not None

    def _evaluate(self, k: int, variant: str, trained: Stage, data: Path) -> Stage:
        out = self.exp / f"fold{k}" / "evaluate" / variant
        args = ("-q", "evaluate", trained.done, data, "--split", "test", "--out", out, "--device", self.cfg.device)
        args += ("--reference", self.cfg.segments) if self.cfg.segments else ()
        return self._add(fesa_stage(name="evaluate", fold=k, variant=variant, out=out, args=args, done=out / "metrics.json", deps=[trained]))

    def select(self, stages: Optional[str]) -> List[Stage]:
        """--stages a:b (a range of STAGE_ORDER) or a,b,c; None for all."""
        if not stages:
            return list(self.stages)
        if ":" in stages:
            first, _, last = stages.partition(":")
            names = STAGE_ORDER[STAGE_ORDER.index(_known(first or STAGE_ORDER[0])) : STAGE_ORDER.index(_known(last or STAGE_ORDER[-1])) + 1]
        else:
            names = [_known(s) for s in stages.split(",")]
        return [s for s in self.stages if s.name in names]


def _known(name: str) -> str:
    if name not in STAGE_ORDER:
        raise FesaError(f"unknown stage {name!r}; stages: {', '.join(STAGE_ORDER)}")
    return name


def shell_script(stages: Sequence[Stage]) -> str:
    lines = ["#!/usr/bin/env bash", "# Written by fesa run --dry-run: every stage of the experiment, in order.", "set -euo pipefail", ""]
    for stage in stages:
        note = "  # complete: fesa run would skip it" if stage.status() == "complete" else ""
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in stage.env.items())
        lines += [f"# {stage.key}{note}", env + shlex.join(stage.command), ""]
    return "\n".join(lines)
