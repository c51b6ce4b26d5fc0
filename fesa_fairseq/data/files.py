"""Reading the text files fairseq's tasks read (manifests, label files) with errors that name the file."""

import os
from pathlib import Path
from typing import List, Tuple, Union

from fesa_fairseq.errors import InputError

PathLike = Union[str, os.PathLike]


def read_manifest(path: PathLike) -> Tuple[str, List[Tuple[str, int]]]:
    path = Path(path)
    lines = read_lines(path, "manifest ")
    if not lines:
        raise InputError(f"manifest {path} is empty: its first line must be the audio root")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].isdigit():
            raise InputError(f"{path}:{lineno}: expected 'relative/path.wav<TAB>num_samples', got {line!r}")
        rows.append((parts[0], int(parts[1])))
    return lines[0], rows


def read_text(path: PathLike, kind: str = "") -> str:
    """A user's text file, or one line naming it: missing, unreadable, or not UTF-8. A leading byte-order mark (what
    Excel's "CSV UTF-8" and some editors write) is dropped, not read as part of the first field."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{kind}{path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise InputError(f"cannot read {kind}{path}: {e.strerror or e}") from e


def read_lines(path: PathLike, kind: str = "") -> List[str]:
    return read_text(path, kind).splitlines()
