"""Reading and writing the plugin's text files without ever leaving one half-written.

Every writer goes through :func:`atomic_write_text`: the content goes to a temporary file in the same
folder, which is then renamed over the destination, so a crash leaves either the old file or the new one.
"""

import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple, Union

from fesa_fairseq.errors import FesaError

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def atomic_write_text(path: PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_lines(path: PathLike, lines: Iterable[str]) -> None:
    atomic_write_text(path, "".join(f"{line}\n" for line in lines))


def write_manifest(path: PathLike, root: PathLike, rows: Sequence[Tuple[str, int]]) -> None:
    """fairseq's audio manifest: the audio root, then `relative/path.wav<TAB>num_samples` per line."""
    atomic_write_lines(path, [str(root)] + [f"{rel}\t{n}" for rel, n in rows])


def read_manifest(path: PathLike) -> Tuple[str, List[Tuple[str, int]]]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise FesaError(f"cannot read manifest {path}: {e.strerror}") from e
    if not lines:
        raise FesaError(f"manifest {path} is empty: its first line must be the audio root")
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].isdigit():
            raise FesaError(
                f"{path}:{lineno}: expected 'relative/path.wav<TAB>num_samples', got {line!r}"
            )
        rows.append((parts[0], int(parts[1])))
    return lines[0], rows


def read_lines(path: PathLike) -> List[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise FesaError(f"cannot read {path}: {e.strerror}") from e
