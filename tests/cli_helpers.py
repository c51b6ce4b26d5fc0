"""What the user-mistake tests share: `fesa ARGS` in this process, the one-line-error check, a folder's bytes."""

import logging
from pathlib import Path
from types import SimpleNamespace

from fesa.cli import main


def fesa_main(capsys, *args) -> SimpleNamespace:
    """`fesa ARGS` in this process: exit code, stdout and stderr (argparse's usage errors included)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    finally:
        root.handlers[:], root.level = handlers, level
    out = capsys.readouterr()
    return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)


def one_line_error(res, needle: str, code: int = 2) -> None:
    assert res.returncode == code, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and needle in res.stderr, res.stderr[-2000:]


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes (compare before and after a refused command)."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
