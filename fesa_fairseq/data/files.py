"""Reading and writing the plugin's text files without ever leaving one half-written.

Every writer goes through :func:`atomic_write_text`: the content goes to a temporary file in the same
folder, which is then renamed over the destination, so a crash leaves either the old file or the new one.
"""

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from fesa_fairseq.errors import FesaError

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@contextmanager
def staged_dir(dest: PathLike, overwrite: bool = False, marker: Optional[str] = None) -> Iterator[Path]:
    """Yield an empty sibling folder of `dest` to fill; when the block succeeds it replaces `dest` whole.

    A set of files that belong together (a corpus, the manifests of five folds) is thus never half old and half
    new: on failure the staging folder is removed and `dest` is as it was. An existing non-empty `dest` is only
    replaced with `overwrite`, and, when `marker` is given, only if it holds that file (it is ours to replace).
    """
    dest = Path(dest)
    if dest.is_file():
        raise FesaError(f"{dest} is a file; a folder is needed there")
    if dest.is_dir() and any(dest.iterdir()):
        if not overwrite:
            raise FesaError(f"{dest} already exists and is not empty: remove it, pick another folder, or pass --overwrite")
        if marker is not None and not (dest / marker).is_file():
            raise FesaError(
                f"{dest} has no {marker}, so it was not written by this command: refusing to replace it "
                "with --overwrite; remove it yourself or pick another folder"
            )
        logger.info("replacing %s once the new content is complete", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        yield staging
        _replace_dir(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_dir(new: Path, dest: Path) -> None:
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old.", dir=dest.parent))
        os.replace(dest, old / dest.name)
        os.replace(new, dest)
        shutil.rmtree(old)
    else:
        os.replace(new, dest)


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
            raise FesaError(f"{path}:{lineno}: expected 'relative/path.wav<TAB>num_samples', got {line!r}")
        rows.append((parts[0], int(parts[1])))
    return lines[0], rows


def read_lines(path: PathLike) -> List[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise FesaError(f"cannot read {path}: {e.strerror}") from e
