"""One stage of a plan: the command it runs, what it writes and reads, and its stamp.

A stage's stamp (``.fesa-stage.json``) holds the fingerprint of its command, of the yaml that command reads and of
the stamps of the stages it reads; and the stage's cell (pipeline/cell.py), which the fingerprint leaves out, so
that stamps written before cells were recorded stay valid. It is written when the stage starts (state "started")
and again when it succeeds (state "complete"). A complete stage with the current fingerprint is skipped. A started
stage with the current fingerprint (it was interrupted) runs again in place, so its resumable work is reused:
fairseq's checkpoint_last.pt, the feature shards of fesa pseudo-labels. Any other output (another fingerprint,
complete or not, or a folder without a stamp) is moved aside to ``<dir>.stale-<time>``, never deleted, and the
stage runs afresh.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from fesa.files import STAGE_STAMP, atomic_write_text
from fesa.pipeline.cell import CELL_OPTION, StageCell
from fesa.pipeline.hydra import config_files

logger = logging.getLogger(__name__)

STAGE_ORDER = (
    "prepare",
    "all-audio",
    "reference",
    "tapt-labels",
    "tapt",
    "tapt-finetune",
    "emotion-labels",
    "cpt",
    "finetune",
    "evaluate",
    "alignment",
)
STAMP = STAGE_STAMP
BEST = Path("checkpoints") / "checkpoint_best.pt"
DAMAGED = "damaged"  # the state of a stamp that is not the json a stage wrote
STALE = ".stale-"  # <dir>.stale-<time>: a stage's old output, moved aside when its command or inputs changed


@dataclass
class Stage:
    cell: StageCell  # what the stage's output is a result of; its name, fold and variant come from it
    out_dir: Path
    command: List[str]
    done: Path  # written by the command when it succeeded
    deps: List["Stage"] = field(default_factory=list)
    training: bool = False  # a fairseq-hydra-train job (a GPU job on SLURM)
    env: Dict[str, str] = field(default_factory=dict)  # set for the command on top of fesa's own environment
    data: List[Path] = field(default_factory=list)  # files whose content the command reads (a table, a corpus listing)

    @property
    def name(self) -> str:
        return self.cell.stage

    @property
    def fold(self) -> Optional[int]:
        return self.cell.fold

    @property
    def variant(self) -> str:
        return self.cell.variant

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
        """None while an input stage is incomplete. Covers the command, the yaml it names and its input stages; not
        the cell a scoring command is handed (``--cell``): it names the result as its folder does and changes nothing
        the command computes, and leaving it out keeps complete the results of experiments scored before it was."""
        dep_stamps = []
        for dep in self.deps:
            if not dep.stamp.is_file():
                return None
            dep_stamps.append(hashlib.sha256(dep.stamp.read_bytes()).hexdigest())
        configs = [hashlib.sha256(path.read_bytes()).hexdigest() for path in config_files(self.command)]
        command = _without_cell(self.command)
        return hashlib.sha256(json.dumps({"command": command, "inputs": dep_stamps, "configs": configs}).encode()).hexdigest()

    def data_digest(self) -> Optional[str]:
        """The content of the data files the command reads (a table, a corpus listing), recorded beside the
        fingerprint rather than in it: stamps written before it was recorded stay valid, so a release that starts
        recording it does not make existing experiments run again."""
        if not self.data:
            return None
        return hashlib.sha256(json.dumps([[str(path), _content(path)] for path in self.data]).encode()).hexdigest()

    def recorded(self) -> Optional[dict]:
        return read_stamp(self.out_dir)

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
            "cell": self.cell.record(),
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
            "cell": self.cell.record(),
            "seconds": round(seconds, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        atomic_write_text(self.stamp, json.dumps(stamp, indent=2) + "\n")


def read_stamp(folder: Path) -> Optional[dict]:
    """A stage's stamp; one that cannot be read is {"state": "damaged"}: its output's origin is unknown (stale)."""
    path = folder / STAMP
    if not path.is_file():
        return None
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return {"state": DAMAGED}
    return stamp if isinstance(stamp, dict) else {"state": DAMAGED}


def _without_cell(command: List[str]) -> List[str]:
    if CELL_OPTION not in command:
        return command
    at = command.index(CELL_OPTION)
    return command[:at] + command[at + 2 :]


def _content(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
