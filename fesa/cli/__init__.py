"""`fesa`: one subcommand per pipeline stage that is not a `fairseq-hydra-train` run.

One module per command group, each holding its parsers beside their handlers: data (corpora and manifests),
labels (pseudo-labels, cluster analysis), scoring (evaluate, acoustic-baseline, eder, report), pipeline (run,
status) and deploy (predict, export). Parsing imports neither torch nor fairseq; a handler imports the plugin when
it runs.
"""

import argparse
import logging
import os
import signal
import sys
from contextlib import nullcontext
from typing import List, Optional, Sequence

from fesa.cli import data, deploy, labels, pipeline, scoring
from fesa.errors import Stopped, user_errors
from fesa.stop import stoppable

GROUPS = (data, labels, scoring, pipeline, deploy)

# What each command that writes reads and writes (argument names): an output that is, holds or lies inside one of
# its inputs is refused before anything is read, --overwrite or not (fesa.files.check_apart).
APART = {
    "prepare-iemocap": (("iemocap_root",), ("out_dir",)),
    "prepare-emobox": (("corpus_dir", "audio_root"), ("out_dir",)),
    "prepare-table": (("table", "audio_root"), ("out_dir",)),
    "pool-audio": (("manifest_dir",), ("out",)),
    "convert-segments": (("source", "manifest", "audio_root"), ("out",)),
    "pseudo-labels": (("manifest_dir", "checkpoint", "kmeans_model"), ("out", "feature_dir")),
    "control-labels": (("labels_dir", "manifest_dir"), ("out",)),
    "analyze-clusters": (("manifest_dir", "checkpoint"), ("out",)),
    "alignment": (("checkpoint", "fold_dir", "reference"), ("out",)),
    "evaluate": (("checkpoint", "fold_dir", "reference"), ("out",)),
    "acoustic-baseline": (("fold_dir",), ("out",)),
    "reference": (("fold_dir",), ("out",)),
    "eder": (("reference", "hypothesis"), ("out",)),
    "predict": (("checkpoint", "inputs", "reference"), ("out",)),
    "export": (("checkpoint", "metrics"), ("onnx", "hf")),
    "import-hf": (("folder",), ("out",)),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fesa", description="Frame-level emotional state alignment on fairseq HuBERT.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings and errors only")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error, not only its one line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # fesa run CONFIG --exp-dir X key=value: argparse cannot take positionals after options with subcommands.
    if extra and not (args.command == "run" and all("=" in e and not e.startswith("-") for e in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    try:
        # fesa run stops its stage's command on SIGINT and SIGTERM from its first moment on (fesa.stop)
        with stoppable() if args.command == "run" else nullcontext():
            _configure_logging(args.quiet)
            _keep_apart(args)
            args.func(args)
    except user_errors() as e:
        return _fail(args, e, str(e), e.exit_code)
    except OSError as e:  # permission denied, a file where a folder belongs, a full disk: the user's to fix
        where = f"{e.filename}: " if e.filename else ""
        return _fail(args, e, f"{where}{e.strerror or e}", 2)
    except Stopped as e:
        return _fail(args, e, str(e), e.exit_code, kind="")
    except KeyboardInterrupt as e:
        return _fail(args, e, "interrupted (SIGINT)", 128 + signal.SIGINT, kind="")
    return 0


def _paths(args: argparse.Namespace, names: Sequence[str]) -> List[str]:
    values = [getattr(args, name, None) for name in names]
    return [p for v in values for p in (v if isinstance(v, list) else [v]) if p]


def _keep_apart(args: argparse.Namespace) -> None:
    """Before anything is read: no output is, holds or lies inside an input; an --out folder written in place is the
    command's own, empty, or given with --overwrite (common.add_own_out)."""
    if args.command in APART:
        from fesa.files import check_apart

        reads, writes = APART[args.command]
        check_apart(_paths(args, writes), _paths(args, reads))
    if getattr(args, "out_markers", None):
        from fesa.files import check_own_dir

        check_own_dir(args.out, args.overwrite, args.out_markers)


def _configure_logging(quiet: bool) -> None:
    """The plugin is imported first: importing fairseq's simple_kmeans configures the root logger itself, and the
    command's level must be the last word (force)."""
    import fesa_fairseq  # noqa: F401

    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        level=logging.WARNING if quiet else os.environ.get("LOGLEVEL", "INFO").upper(),
        stream=sys.stderr,
        force=True,
    )


def _fail(args: argparse.Namespace, error: BaseException, message: str, code: int, kind: str = "error: ") -> int:
    """One line (exit 2: bad input; 1: a stage failed; 128 + the signal: stopped); --debug adds the traceback."""
    if args.debug:
        import traceback

        traceback.print_exception(error)
    print(f"fesa {args.command}: {kind}{message}", file=sys.stderr)
    return code
