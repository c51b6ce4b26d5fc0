"""Writing the application's files without ever leaving one half-written, and reading JSON strictly.

Every writer goes through :func:`atomic_write_bytes`: the content goes to a temporary file in the same
folder, which is then renamed over the destination, so a crash leaves either the old file or the new one.
A set of files that belong together is written into :func:`staged_dir` and swapped in whole. Errors name the
user's path, never a temporary one.
"""

import json
import logging
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, List, Sequence, Tuple

from fesa.errors import FesaError
from fesa_fairseq.data.files import PathLike, read_text

logger = logging.getLogger(__name__)


STAGE_STAMP = ".fesa-stage.json"  # what fesa run records in a stage's output folder (pipeline.stage.Stage.stamp)


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: PathLike, data: object, indent: int = 2) -> None:
    """Standard json (no NaN or Infinity, which other readers refuse): a non-finite number is written null."""
    atomic_write_text(path, json.dumps(finite_or_none(data), indent=indent, allow_nan=False) + "\n")


def finite_or_none(data: object) -> object:
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_or_none(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_or_none(v) for v in data]
    return data


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_with(path: PathLike, write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` fills a temporary file beside ``path`` (torch.save, a serialiser), which then replaces it."""
    path = Path(path)
    if path.is_dir():
        raise FesaError(f"{path} is a folder; a file is to be written there: give a file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException as e:
        os.unlink(tmp)
        if isinstance(e, OSError):
            raise FesaError(f"cannot write {path}: {e.strerror or e}") from e
        raise


def check_apart(outputs: Sequence[PathLike], inputs: Sequence[PathLike]) -> None:
    """The one rule for every command that writes: an output (file or folder) that is, holds or lies inside one of
    the command's own inputs is refused, ``--overwrite`` or not, before anything is read. Paths are compared
    resolved, so a symlink or ``..`` spelling of an input is the input."""
    for output in outputs:
        # A rename replaces a link itself, not its target: the link's own place counts as well as where it points.
        places = {Path(output).resolve(), Path(output).parent.resolve() / Path(output).name}
        for source, real in ((s, r) for s in inputs for r in places):
            src = Path(source).resolve()
            if src == real:
                raise FesaError(f"{output} is this command's own input: refusing to write over it; write the output elsewhere")
            if real in src.parents:
                raise FesaError(f"{output} holds this command's own input {source}: refusing to write there; write the output elsewhere")
            if src in real.parents:
                raise FesaError(f"{output} lies inside this command's input {source}: refusing to write there; write the output elsewhere")


def check_replaceable(dest: PathLike, marker: str) -> None:
    """The one rule for ``--overwrite``: only a folder this project wrote (it holds ``marker``, or nothing but the
    stamp fesa run puts in a stage's folder before the stage's command runs) is replaced."""
    dest = Path(dest)
    if not (dest / marker).is_file() and not {p.name for p in dest.iterdir()} <= {STAGE_STAMP}:
        raise FesaError(
            f"{dest} has no {marker}, so it was not written by this command: refusing to replace it "
            "with --overwrite; remove it yourself or pick another folder"
        )


def check_own_dir(dest: PathLike, overwrite: bool, markers: Sequence[str]) -> None:
    """The rule for a command that writes into its ``--out`` folder in place, resuming what it finds there: a
    non-empty folder is the command's own when it holds one of ``markers`` (the file it writes last) or the stamp
    fesa run writes into a stage's folder before the stage's command runs; any other is refused unless
    ``overwrite`` (the command's files are then written beside the others, which stay)."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise FesaError(f"{dest} is a file; a folder is needed there")
    if overwrite or not dest.is_dir():
        return
    names = {p.name for p in dest.iterdir()}
    if names and not names & {*markers, STAGE_STAMP}:
        raise FesaError(
            f"{dest} is not empty and this command did not write it (it holds no {markers[0]}): pick another folder, "
            "or pass --overwrite to write into it (files of the same names are replaced, the others kept)"
        )


def check_output_file(dest: PathLike, overwrite: bool, inputs: Sequence[PathLike] = ()) -> None:
    """May the file `dest` be written (atomically)? Never over or inside an input; an existing one only with --overwrite."""
    dest = Path(dest)
    if not str(dest) or dest == Path("."):
        raise FesaError("an output file must be named")
    check_apart([dest], inputs)
    if dest.is_dir():
        raise FesaError(f"{dest} is a folder; a file is to be written there: give a file name")
    if dest.exists() and not overwrite:
        raise FesaError(f"{dest} exists: pass --overwrite to replace it, or pick another name")


def check_output_dir(dest: PathLike, overwrite: bool, marker: str, inputs: Sequence[PathLike] = ()) -> bool:
    """May `dest` be written by :func:`staged_dir`? Called early too, before a long scan. True: it will be replaced."""
    dest = Path(dest)
    if not str(dest) or dest == Path("."):
        raise FesaError("an output folder must be named: the working folder is not replaced")
    check_apart([dest], inputs)
    if dest.is_file():
        raise FesaError(f"{dest} is a file; a folder is needed there")
    if not (dest.is_dir() and any(dest.iterdir())):
        return False
    if not overwrite:
        raise FesaError(f"{dest} already exists and is not empty: remove it, pick another folder, or pass --overwrite")
    check_replaceable(dest, marker)
    return True


@contextmanager
def staged_dir(dest: PathLike, overwrite: bool = False, marker: str = "", inputs: Sequence[PathLike] = ()) -> Iterator[Path]:
    """Yield an empty sibling folder of `dest` to fill; when the block succeeds it replaces `dest` whole.

    A set of files that belong together (a corpus, the manifests of five folds) is thus never half old and half
    new: on failure the staging folder is removed and `dest` is as it was. An existing non-empty `dest` is only
    replaced with `overwrite`, and only under :func:`check_replaceable` (it holds `marker`, which the block must
    write); it is never one of `inputs`, nor holds or lies inside one (:func:`check_apart`).
    """
    dest = Path(dest)
    if check_output_dir(dest, overwrite, marker, inputs):
        logger.info("replacing %s once the new content is complete", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; the folder gets the mode mkdir would give it
    try:
        yield staging
        if marker and not (staging / marker).is_file():
            raise RuntimeError(f"{dest} was staged without its marker {marker}")
        _replace_dir(staging, dest)
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError) and e.filename and str(staging) in str(e.filename):
            raise FesaError(f"{str(e.filename).replace(str(staging), str(dest))}: {e.strerror or e}") from e
        if isinstance(e, FesaError) and str(staging) in str(e):
            raise FesaError(str(e).replace(str(staging), str(dest))) from e
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


def _unique_keys(pairs: List[Tuple[str, object]]) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    pass


def parse_json(text: str, where: str) -> object:
    """Strict JSON: a key given twice is refused (json's default keeps the last, silently), as is NaN/Infinity."""
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except _DuplicateKey as e:
        raise FesaError(f"{where} gives the key {e.args[0]!r} twice: keep one") from None
    except ValueError as e:
        raise FesaError(f"{where} is not valid JSON: {e}") from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def read_json(path: PathLike, kind: str = "") -> object:
    """A user's JSON file, strictly (:func:`parse_json`), or one line naming it."""
    return parse_json(read_text(path, kind), f"{kind}{path}")
