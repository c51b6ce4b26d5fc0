"""The method, fold by fold, as a list of stages; each stage is the very command a user could type.

    prepare -> reference -> tapt-labels -> tapt -> tapt-finetune -> emotion-labels -> cpt -> finetune -> evaluate
    (and alignment of the source, TAPT and CPT models where the experiment names segment truth, segments:)

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
    EXP/logs/                                 one log per stage run

Under ``protocol: authors`` (transductive, as the authors' code): EXP/all/all-audio/ (fesa pool-audio: every session's
audio, no label), EXP/all/tapt-labels/ and EXP/all/tapt/ (one TAPT for all folds, on it); each fold's emotion labels
(k-means of its fine-tuned TAPT model's frames) and CPT read it too; fine-tuning, model selection and scoring stay
per fold, on the fold's own manifests.

Controls (cpt_targets) add emotion-labels/L{l}-K{k}-{utterance,shuffled} and cpt/tapt-units, and their cells are
named after them (L{l}-K{k}-shuffled-{pooling}, tapt-units-{pooling}); seeds add -s{seed} to tapt-finetune, cpt,
finetune and evaluate folders. Each folder is named after its stage's cell (pipeline/cell.py: the stage, fold,
model, layer, K, CPT targets, pooling and seed), which evaluate writes into metrics.json and every stage into its
stamp: the report reads results by their cell, not by their folder's name.

Stages, their stamps and fingerprints: pipeline/stage.py; fairseq-hydra-train commands: pipeline/hydra.py; the
--dry-run script: pipeline/script.py.
"""

import logging
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from fesa.corpora.table import corpus_fingerprint_files
from fesa.errors import FesaError
from fesa.labels.alignment import ALIGNMENT_FILE
from fesa.options import HOLDOUT, POOL_INFO, PseudoLabelOptions, flag
from fesa.pipeline.cell import BASELINE, CPT, REFERENCE, StageCell
from fesa.pipeline.distributed import distributed_overrides
from fesa.pipeline.experiment import AUTHORS, SAME, Cell, CorpusSpec, ExperimentConfig, check_hydra_path, corpus_folds, corpus_spec, stage_yaml
from fesa.pipeline.hydra import hydra_path, hydra_train, seed_override
from fesa.pipeline.stage import BEST, STAGE_ORDER, Stage

logger = logging.getLogger(__name__)


def _check_outside(manifests: Path, spec: CorpusSpec) -> None:
    """The prepare stage may not write inside its corpus (fesa.files.check_apart): said when the plan is made, not
    when the stage runs, naming the folder the user may not have given (a table's audio root is its folder)."""
    root = spec.audio_root or (str(Path(spec.path).parent) if spec.format == "table" else spec.path)
    if Path(root).resolve() in Path(manifests).resolve().parents:
        what = "its audio root (corpus.audio_root; a table's own folder when not given)" if spec.format != "iemocap" else "the corpus"
        raise FesaError(f"the experiment folder's manifests {manifests} would lie inside {root}, {what}: give --exp-dir outside it")


def _corpus_description(spec: CorpusSpec) -> List[Path]:
    """The files that describe a table or EmoBox corpus to prepare: editing one changes what prepare writes. An
    IEMOCAP release is fixed once published, and hashing its label files would make existing experiments run again."""
    return corpus_fingerprint_files(spec.format, Path(spec.path)) if spec.format in ("table", "emobox") else []


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


def fesa_stage(cell: StageCell, out: Path, args: Sequence[object], done: Path, deps=(), data=()) -> Stage:
    """A stage that runs a fesa command: what it writes (``out``, and ``done`` last), what it reads (``deps``, and the
    files of ``data``)."""
    return Stage(cell=cell, out_dir=out, command=fesa(*args), done=done, deps=list(deps), data=list(data))


def training_stage(cell: StageCell, *, group: str, config: str, out: Path, overrides: Sequence[str], deps=(), gpus: int = 1) -> Stage:
    """A fairseq-hydra-train run of the plugin yaml ``group/config`` (a GPU job on SLURM); done at its best checkpoint.
    On ``gpus`` > 1, fairseq's distributed training with the yaml's batch per step (pipeline/distributed.py)."""
    command = hydra_train(group, config, out, [*distributed_overrides(stage_yaml(group, config), gpus, overrides), *overrides])
    return Stage(cell=cell, out_dir=out, command=command, done=out / BEST, deps=list(deps), training=True)


def labels_stage(cell: StageCell, *, data: Path, out: Path, how: Sequence[str], device: str, deps=()) -> Stage:
    """fesa pseudo-labels of the fold's train and valid splits (never test), ``how`` naming features and k-means."""
    args = ("pseudo-labels", "--manifest-dir", data, "--splits", "train,valid", "--out", out, *how, "--device", device)
    return fesa_stage(cell, out=out, args=args, done=out / "labels.json", deps=deps)


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
        self.pool = self._pool([prepare] if prepare else []) if cfg.protocol == AUTHORS else None
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
        if self.cfg.validation != HOLDOUT.validation:  # left out by default: the commands of existing experiments hold
            args += ("--validation", self.cfg.validation)
        return self._add(fesa_stage(StageCell("prepare"), out=self.manifests, args=args, done=self.manifests / "prepare.json", data=data))

    def _pool(self, deps: List[Stage]) -> Stage:
        """protocol: authors: the audio of every session, train, valid and test, in one manifest folder without labels."""
        cell = StageCell("all-audio")
        out = self.exp / cell.folder
        folds = ",".join(str(k) for k in corpus_folds(self.cfg))  # all of them, whichever folds run: TAPT is one
        args = ("-q", "pool-audio", self.manifests, "--folds", folds, "--out", out, "--overwrite")
        return self._add(fesa_stage(cell, out=out, args=args, done=out / POOL_INFO, deps=deps))

    def audio(self, data: Path) -> Path:
        """The manifests TAPT, its labels, the emotion labels and CPT read: the fold's training sessions (train and
        valid), or under protocol: authors every session's audio (all-audio)."""
        return data if self.pool is None else self.pool.out_dir

    def _shared(self, k: int) -> Optional[int]:
        """The fold of a stage that sees only audio: the fold's own, or none (shared by all folds) under authors."""
        return k if self.pool is None else None

    def _plan_fold(self, k: int, deps: List[Stage], cells: Sequence[Cell]) -> None:
        data = self.manifests / f"fold{k}"
        reference = StageCell("reference", k, model=REFERENCE)
        out = self.exp / reference.folder
        args = ("-q", "acoustic-baseline", data, "--split", "test", "--out", out, *reference.option())
        self._add(fesa_stage(reference, out=out, args=args, done=out / "metrics.json", deps=deps))
        source = self.source
        pretrained = source
        deps = deps + ([self.pool] if self.pool else [])  # what reads all-audio waits for it, skip_tapt or not
        if not self.cfg.skip_tapt:
            tapt = self._tapt(k, self.audio(data), source, deps)
            pretrained, deps = str(tapt.done), [tapt]
        labeller = self._baselines(k, data, pretrained, str(cells[0].get("pooling", self.cfg.pooling)), deps)
        for cell in cells:  # the labels come from the first seed's fine-tuned TAPT model and are shared by every seed
            for seed in self.cfg.seeds or [None]:
                self._cell(data, cell, self._method(k, cell, seed), labeller, source if self.cfg.cpt_init == "source" else pretrained, deps)

    def _baselines(self, k: int, data: Path, pretrained: str, pooling: str, deps: List[Stage]) -> Stage:
        """The baseline of each seed, scored, and the fine-tuned TAPT model the emotion labels come from: the first
        seed's baseline, or, where baseline_pooling differs from the cells' pooling, a model of the cells' pooling,
        so that the method's labels do not depend on what it is compared against."""
        seeds = self.cfg.seeds or [None]
        compared = pooling if self.cfg.baseline_pooling == SAME else self.cfg.baseline_pooling
        baselines = [self._baseline(k, data, pretrained, compared, deps, seed, named=compared != pooling) for seed in seeds]
        for baseline in baselines:
            self._evaluate(baseline, data)
        return baselines[0] if compared == pooling else self._baseline(k, data, pretrained, pooling, deps, seeds[0])

    def _tapt(self, k: int, data: Path, source: Optional[str], deps: List[Stage]) -> Stage:
        cfg, labels_cfg = self.cfg, self.cfg.tapt_labels
        mfcc = ["--features", "mfcc", "--clusters", str(labels_cfg.clusters), "--kmeans-backend", labels_cfg.kmeans_backend]
        mfcc += _changed(labels_cfg, ("seed",))
        how = mfcc if cfg.bootstrap else _labels_args(labels_cfg, source)
        model, layer = (None, None) if cfg.bootstrap else ("source", labels_cfg.layer)  # the bootstrap clusters MFCC frames
        cell = StageCell("tapt-labels", self._shared(k), model=model, layer=layer, clusters=labels_cfg.clusters)
        labels = self._add(labels_stage(cell, data=data, out=self.exp / cell.folder, how=how, device=cfg.device, deps=deps))
        self.tapt_labels[k] = labels
        init = ["model.init_checkpoint=null", "model.label_rate=100"] if cfg.bootstrap else [hydra_path("model.init_checkpoint", source)]
        overrides = [hydra_path("task.data", data), hydra_path("task.label_dir", labels.out_dir), *init, *cfg.overrides.tapt]
        cell = StageCell("tapt", self._shared(k), model="tapt")
        out = self.exp / cell.folder
        self.tapt[k] = self._add(
            training_stage(cell, group="tapt", config=cfg.configs.tapt, out=out, overrides=overrides, deps=[labels], gpus=self.gpus)
        )
        return self.tapt[k]

    def _baseline(self, k: int, data: Path, pretrained: str, pooling: str, deps: List[Stage], seed: Optional[int], named: bool = False) -> Stage:
        cell = StageCell("tapt-finetune", k, model=BASELINE, pooling=pooling, seed=seed, named_pooling=named or None)
        overrides = [
            hydra_path("task.data", data),
            hydra_path("model.w2v_path", pretrained),
            f"model.pooling={pooling}",
            *self.cfg.overrides.tapt_finetune,
            *seed_override(seed),
        ]
        out, config = self.exp / cell.folder, self.cfg.configs.finetune
        return self._add(training_stage(cell, group="finetune", config=config, out=out, overrides=overrides, deps=deps, gpus=self.gpus))

    def _method(self, k: int, cell: Cell, seed: Optional[int]) -> StageCell:
        """The fine-tuning stage's cell of a grid cell: its layer and K (the experiment's emotion_labels where it gives
        none; none on the TAPT stage's units), CPT targets, pooling and seed."""
        targets = str(cell.get("cpt_targets", self.cfg.cpt_targets))
        layer, clusters = (None, None) if targets == "tapt" else self._layer_k(cell)
        pooling = str(cell.get("pooling", self.cfg.pooling))
        return StageCell("finetune", k, model=CPT, layer=layer, clusters=clusters, targets=targets, pooling=pooling, seed=seed)

    def _cell(self, data: Path, cell: Cell, method: StageCell, baseline: Stage, init_from: Optional[str], tapt_deps: List[Stage]) -> None:
        """One cell of the grid: the CPT targets of its layer, K and target kind, continued pretraining on them,
        fine-tuning with its pooling, scoring; with seeds, CPT onwards once per seed."""
        cfg, seed = self.cfg, method.seed
        labels = self._cpt_labels(self.audio(data), method, baseline)
        overrides = [
            hydra_path("task.data", self.audio(data)),
            hydra_path("task.label_dir", labels.out_dir),
            hydra_path("model.init_checkpoint", init_from),
        ]
        if cfg.bootstrap and method.targets == "tapt":
            overrides.append("model.label_rate=100")  # the bootstrap's TAPT labels are MFCC frames, 100 a second
        overrides += cfg.overrides.cpt + seed_override(seed)
        deps = [labels] + (tapt_deps if cfg.cpt_init == "tapt" else [])
        trains = replace(method, stage="cpt", pooling=None)
        out = self.exp / trains.folder
        cpt = self._add(training_stage(trains, group="cpt", config=cfg.configs.cpt, out=out, overrides=overrides, deps=deps, gpus=self.gpus))
        if seed == (cfg.seeds or [None])[0]:  # the first seed's CPT model stands for the others
            self._alignments(data, cpt, *self._layer_k(cell))
        overrides = [hydra_path("task.data", data), hydra_path("model.w2v_path", cpt.done), f"model.pooling={method.pooling}"]
        overrides += cfg.overrides.finetune + seed_override(seed)
        out = self.exp / method.folder
        trained = self._add(
            training_stage(method, group="finetune", config=cfg.configs.finetune, out=out, overrides=overrides, deps=[cpt], gpus=self.gpus)
        )
        self._evaluate(trained, data)

    def _layer_k(self, cell: Cell) -> Tuple[int, int]:
        """The layer clustered and K of a cell: its own, else the experiment's emotion_labels."""
        return int(cell.get("layer", self.cfg.emotion_labels.layer)), int(cell.get("K", self.cfg.emotion_labels.clusters))

    def _cpt_labels(self, data: Path, method: StageCell, baseline: Stage) -> Stage:
        """The labels CPT predicts in this cell: the method's clusters of layer l (L{l}-K{k}), a control made from
        them (L{l}-K{k}-utterance, -shuffled), or the TAPT stage's own units (tapt-units)."""
        cfg, k = self.cfg, method.fold
        if method.targets == "tapt":
            return self.tapt_labels[k]
        at = {"layer": method.layer, "clusters": method.clusters}
        clusters = StageCell("emotion-labels", k, model=BASELINE, **at, targets="clusters", seed=baseline.cell.seed)
        how = _labels_args(replace(cfg.emotion_labels, **at), str(baseline.done))
        out = self.exp / clusters.folder
        labels = self._add(labels_stage(clusters, data=data, out=out, how=how, device=cfg.device, deps=[baseline]))
        if method.targets == "clusters":
            return labels
        control = replace(clusters, targets=method.targets)
        out = self.exp / control.folder
        args = ("control-labels", labels.out_dir, "--kind", method.targets, "--manifest-dir", data, "--out", out, "--overwrite")
        return self._add(fesa_stage(control, out=out, args=args, done=out / "labels.json", deps=[labels]))

    def _alignments(self, data: Path, cpt: Stage, layer: int, clusters: int) -> None:
        """fesa alignment at the cell's layer and K of the models before CPT (source, TAPT) and after it."""
        k, at = cpt.fold, {"layer": layer, "clusters": clusters}
        if not self.truth():
            return
        models = [(replace(cpt.cell, stage="alignment", **at), str(cpt.done), [cpt])]
        if k in self.tapt:
            models.append((StageCell("alignment", k, model="tapt", **at), str(self.tapt[k].done), [self.tapt[k]]))
        if self.source:
            models.append((StageCell("alignment", k, model="source", **at), self.source, [s for s in self.stages if s.name == "prepare"]))
        for cell, model, needs in models:
            out = self.exp / cell.folder
            args = ("-q", "alignment", model, data, "--layer", layer, "--clusters", clusters, "--out", out, "--device", self.cfg.device)
            args += ("--reference", self.cfg.segments)
            self._add(fesa_stage(cell, out=out, args=args, done=out / ALIGNMENT_FILE, deps=needs))

    def truth(self) -> bool:
        """Whether the experiment names true segments (``segments:``) and wants its alignment measured."""
        return self.cfg.segments is not None and self.cfg.alignment is not False

    def _evaluate(self, trained: Stage, data: Path) -> Stage:
        """The trained model scored on the fold's test split; its metrics.json records its cell (--cell)."""
        cell = replace(trained.cell, stage="evaluate", protocol=AUTHORS if self.pool else None)  # the report says it
        out = self.exp / cell.folder
        args = ("-q", "evaluate", trained.done, data, "--split", "test", "--out", out, "--device", self.cfg.device)
        args += (("--reference", self.cfg.segments) if self.cfg.segments else ()) + tuple(cell.option())
        return self._add(fesa_stage(cell, out=out, args=args, done=out / "metrics.json", deps=[trained]))

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
