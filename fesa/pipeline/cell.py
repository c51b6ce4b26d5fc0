"""The cell of a stage: what its output is a result of, in the experiment's own terms (the stage, the fold, the model,
the layer and K clustered, CPT's targets, the pooling, the seed).

The plan builds one per stage and derives the stage's folder from it; evaluate and acoustic-baseline write it into
their metrics.json (``--cell``), every stage into its stamp. The report reads it there. Results written before
cells were recorded are read by :func:`legacy_cell`, the one place a folder name is parsed.
"""

import json
import logging
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import List, Optional, Tuple

from fesa.errors import FesaError
from fesa.options import CONTROL_LABEL_KINDS

logger = logging.getLogger(__name__)

REFERENCE = "reference"  # the acoustic reference (EXP/fold{k}/evaluate/reference), scored like every model
BASELINE = "baseline"  # the TAPT model fine-tuned: the paper's baseline
CPT = "cpt"  # a model continued-pretrained on the cell's targets (then fine-tuned: the method, or a control)
TAPT_UNITS = "tapt-units"  # the name of cpt_targets: tapt, CPT on the TAPT stage's own labels
CELL_OPTION = "--cell"  # how the plan hands a scoring command its cell
# cpt_targets whose model is a control of the method (README: Controls); "clusters" is the method itself
CONTROLS = (*CONTROL_LABEL_KINDS, "tapt")


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class StageCell:
    """A stage's place in the experiment; None where a field does not apply to the stage."""

    stage: str = field(metadata=_help("the stage: prepare, reference, tapt-labels, tapt, ..., evaluate, alignment"))
    fold: Optional[int] = field(default=None, metadata=_help("the corpus fold (None: the prepare stage)"))
    model: Optional[str] = field(
        default=None, metadata=_help("the model the stage trains, scores, measures or clusters: source, tapt, baseline, cpt, reference")
    )
    layer: Optional[int] = field(default=None, metadata=_help("the transformer layer clustered: for CPT's targets, the TAPT labels or an alignment"))
    clusters: Optional[int] = field(default=None, metadata=_help("K, the k-means clusters of that layer"))
    targets: Optional[str] = field(default=None, metadata=_help("cpt_targets: clusters (the method), utterance, shuffled, tapt"))
    pooling: Optional[str] = field(default=None, metadata=_help("the classifier's pooling"))
    seed: Optional[int] = field(default=None, metadata=_help("the training seed of a replicated model (None: the yaml's)"))
    named_pooling: Optional[bool] = field(
        default=None, metadata=_help("true: the pooling is part of the folder's name (a baseline pooled apart from its cells: baseline_pooling)")
    )
    protocol: Optional[str] = field(
        default=None,
        metadata=_help("authors: a result of the transductive protocol (TAPT, k-means and CPT saw every session's audio); None: per fold"),
    )

    @property
    def lk(self) -> str:
        return f"L{self.layer}-K{self.clusters}"

    @property
    def labels_name(self) -> str:
        """What CPT predicts: L9-K50 (the method's clusters), L9-K50-utterance, L9-K50-shuffled, tapt-units."""
        if self.targets == "tapt":
            return TAPT_UNITS
        return self.lk + ("" if self.targets == "clusters" else f"-{self.targets}")

    @property
    def model_name(self) -> str:
        """What the report calls the model: reference, baseline, L9-K50-attention, L9-K50-shuffled-attention,
        tapt-units-attention; for alignment, the model measured at a layer and K (cpt-L9-K50, tapt-L9-K50, ...)."""
        if self.stage == "alignment":
            parts = [self.model] + [TAPT_UNITS] * (self.targets == "tapt") + [self.lk] * (self.layer is not None)
            return "-".join(parts + [self.targets] * (self.targets in CONTROL_LABEL_KINDS))
        return f"{self.labels_name}-{self.pooling}" if self.model == CPT else str(self.model)

    @property
    def run_name(self) -> str:
        """The model's name and, for one seed of a replicated model, -s{seed}; an alignment is measured once a fold,
        of the first seed's CPT model, and named without it."""
        return self.model_name + self.pooling_suffix + ("" if self.stage == "alignment" else seed_suffix(self.seed))

    @property
    def pooling_suffix(self) -> str:
        return f"-{self.pooling}" if self.named_pooling else ""

    @property
    def variant(self) -> str:
        """The last part of the stage's key (fold1/cpt/L9-K50-s2); empty for a stage with one run a fold."""
        if self.stage in ("prepare", "all-audio", "reference", "tapt-labels", "tapt"):
            return ""
        if self.stage == "tapt-finetune":
            return (self.pooling_suffix + seed_suffix(self.seed))[1:]
        if self.stage == "emotion-labels":
            return self.labels_name
        if self.stage == "cpt":
            return self.labels_name + seed_suffix(self.seed)
        return self.run_name

    @property
    def folder(self) -> PurePosixPath:
        """The stage's output folder in the experiment folder (the layout of pipeline/plan.py)."""
        fold = PurePosixPath("all" if self.fold is None else f"fold{self.fold}")  # all: shared by the folds (protocol: authors)
        if self.stage == "reference":
            return fold / "evaluate" / REFERENCE
        if self.stage == "tapt-finetune":
            return fold / f"tapt-finetune{self.pooling_suffix}{seed_suffix(self.seed)}"
        return fold / self.stage / self.variant if self.variant else fold / self.stage

    def record(self) -> dict:
        """The cell as json; without named_pooling and protocol where they are not set, as cells were recorded before."""
        return {k: v for k, v in asdict(self).items() if k not in ("named_pooling", "protocol") or v is not None}

    def option(self) -> List[str]:
        """``--cell JSON`` for a scoring command: the fields that apply."""
        return [CELL_OPTION, json.dumps({k: v for k, v in asdict(self).items() if v is not None}, separators=(",", ":"))]

    @classmethod
    def from_record(cls, record: object) -> "StageCell":
        """A cell from its json (metrics.json, a stamp, --cell); absent fields are None."""
        types = {"fold": int, "layer": int, "clusters": int, "seed": int, "named_pooling": bool}
        if not isinstance(record, dict) or not isinstance(record.get("stage"), str):
            raise FesaError(f"a cell is a json object with a 'stage', got {record!r}")
        for key, value in record.items():
            if key not in {f.name for f in fields(cls)}:
                raise FesaError(f"a cell has no field {key!r}; its fields: {', '.join(f.name for f in fields(cls))}")
            if value is not None and type(value) is not types.get(key, str):
                raise FesaError(f"the cell's {key} is {value!r}, not {_KINDS[types.get(key, str)]}")
        return cls(**record)


_KINDS = {int: "a whole number", bool: "true or false", str: "a string"}


def seed_suffix(seed: Optional[int]) -> str:
    """-s{seed} on the folder and result names of a replicated stage; nothing without seeds (names unchanged)."""
    return "" if seed is None else f"-s{seed}"


def read_json_cell(text: str) -> StageCell:
    try:
        return StageCell.from_record(json.loads(text))
    except json.JSONDecodeError as e:
        raise FesaError(f"{CELL_OPTION} takes a json object: {e}") from e


def recorded_cell(folder: Path, content: dict, stamp: Optional[dict]) -> Optional[StageCell]:
    """A result's cell: the one its json records (evaluate's metrics.json), else its stage's stamp's, else the legacy
    reader's; None for a folder fesa run did not name."""
    for record in (content.get("cell"), (stamp or {}).get("cell")):
        if record is not None:
            return StageCell.from_record(record)
    return legacy_cell(folder)


def legacy_cell(folder: Path) -> Optional[StageCell]:
    """The legacy reader: the cell of a result of fold{k}/evaluate/<name> or fold{k}/alignment/<name> written before
    results recorded their cell, read back from the name fesa run gave its folder. A name fesa run does not write
    (a folder of the user's own) is a model of that name; None outside a fold's evaluate or alignment folder."""
    kind, fold = folder.parent.name, folder.parent.parent.name[len("fold") :]
    if kind not in ("evaluate", "alignment") or not fold.isdigit():
        return None
    base, sep, tail = folder.name.rpartition("-s")
    name, seed = (base, int(tail)) if sep and tail.isdigit() and kind == "evaluate" else (folder.name, None)
    if name in (REFERENCE, BASELINE) and kind == "evaluate":
        return StageCell(REFERENCE if name == REFERENCE else kind, int(fold), model=name, seed=seed)
    words = name.split("-")
    model, pooling, words = (CPT, words[-1], words[:-1]) if kind == "evaluate" else (words[0], None, words[1:])
    labels = _legacy_labels(words, model)
    if labels is None:
        return StageCell(kind, int(fold), model=name, seed=seed)
    return StageCell(kind, int(fold), model=model, layer=labels[0], clusters=labels[1], targets=labels[2], pooling=pooling, seed=seed)


def _legacy_labels(words: List[str], model: str) -> Optional[Tuple[Optional[int], Optional[int], Optional[str]]]:
    """(layer, K, targets) of the labels part of a name: tapt-units, L9-K50, L9-K50-shuffled; alignment names put a
    layer and K after tapt-units, and the models before CPT have no targets."""
    tapt = words[:2] == ["tapt", "units"]
    words = words[2:] if tapt else words
    if not words:
        return (None, None, "tapt") if tapt else None
    lk = [w[1:] for w in words[:2] if len(words) in (2, 3)]
    if [w[:1] for w in words[:2]] != ["L", "K"] or len(lk) != 2 or not all(n.isdigit() for n in lk):
        return None
    control = words[2] if len(words) == 3 else None
    if control is not None and (tapt or control not in CONTROL_LABEL_KINDS):
        return None
    return int(lk[0]), int(lk[1]), "tapt" if tapt else control or ("clusters" if model == CPT else None)
