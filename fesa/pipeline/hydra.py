"""fairseq-hydra-train command lines: the plugin yaml a training stage runs, and its overrides quoted for hydra."""

import re
from pathlib import Path
from typing import List, Optional, Sequence

from fesa.errors import FesaError
from fesa.pipeline.experiment import PLUGIN, stage_yaml

_HYDRA_PLAIN = re.compile(r"[\w./:@+~%-]+", re.ASCII)


def hydra_train(stage: str, config: str, run_dir: Path, overrides: Sequence[str]) -> List[str]:
    return ["fairseq-hydra-train", *_config(stage, config), hydra_path("common.user_dir", PLUGIN), hydra_path("hydra.run.dir", run_dir), *overrides]


def _config(stage: str, name: str) -> List[str]:
    path = stage_yaml(stage, name)
    return ["--config-dir", str(path.parent), "--config-name", path.stem]


def config_files(command: Sequence[str]) -> List[Path]:
    """The yaml a fairseq-hydra-train command reads: editing it changes the stage as much as an override does."""
    if "--config-dir" not in command or "--config-name" not in command:
        return []
    folder, name = command[command.index("--config-dir") + 1], command[command.index("--config-name") + 1]
    path = Path(folder) / f"{name}.yaml"
    if not path.is_file():
        raise FesaError(f"no config {path} (configs.<stage> names a yaml of fesa_fairseq/config/<stage>/ or a path)")
    return [path]


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


def seed_override(seed: Optional[int]) -> List[str]:
    return [] if seed is None else [f"common.seed={seed}"]
