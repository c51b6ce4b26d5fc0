"""fesa run --dry-run: the plan's stages as one shell script, in order."""

import shlex
from typing import Sequence

from fesa.pipeline.stage import Stage


def shell_script(stages: Sequence[Stage]) -> str:
    lines = ["#!/usr/bin/env bash", "# Written by fesa run --dry-run: every stage of the experiment, in order.", "set -euo pipefail", ""]
    for stage in stages:
        note = "  # complete: fesa run would skip it" if stage.status() == "complete" else ""
        env = "".join(f"{k}={shlex.quote(v)} " for k, v in stage.env.items())
        lines += [f"# {stage.key}{note}", env + shlex.join(stage.command), ""]
    return "\n".join(lines)
