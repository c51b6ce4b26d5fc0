"""What the command groups share: option helpers (each option declared once here), argument types, score printing.

Nothing here imports torch or fairseq: a command's handler imports the plugin when it runs, never its parser.
"""

import argparse
from dataclasses import fields
from typing import Dict, List, Optional, Sequence, Type, Union, get_args, get_origin

from fesa.errors import FesaError
from fesa.options import DEVICE, DEVICE_HELP, NEUTRAL, check_device_name

Parser = argparse.ArgumentParser
Subparsers = argparse._SubParsersAction


def output_path(text: str) -> str:
    """An output path: an empty one would be the working folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path: give a file or folder name")
    return text


def device_name(text: str) -> str:
    try:
        return check_device_name(text, "")
    except FesaError as e:
        raise argparse.ArgumentTypeError(str(e).strip()) from None


def ints(text: str, option: str) -> List[int]:
    try:
        return [int(x) for x in text.split(",") if x]
    except ValueError as e:
        raise FesaError(f"{option} takes comma-separated integers, got {text!r}") from e


def add_out(p: Parser, help: str, required: bool = True) -> None:
    p.add_argument("--out", type=output_path, required=required, help=help)


def add_own_out(p: Parser, help: str, markers: Sequence[str]) -> None:
    """--out, a folder the command writes into in place (resuming what it finds there), and --overwrite. A non-empty
    folder is refused unless it holds one of ``markers`` (what the command writes last) or fesa run's stage stamp,
    or --overwrite is given (fesa.cli.main checks it before anything is read: fesa.files.check_own_dir)."""
    add_out(p, help)
    add_overwrite(p, "write into a non-empty --out folder this command did not write (files of the same names are replaced, the others kept)")
    p.set_defaults(out_markers=tuple(markers))


def add_device(p: Parser) -> None:
    p.add_argument("--device", type=device_name, default=DEVICE, help=DEVICE_HELP)


def add_neutral(p: Parser) -> None:
    p.add_argument("--neutral", default=NEUTRAL, help=f"the label of time no true segment covers (default {NEUTRAL})")


def add_seed(p: Parser, help: str, default: int) -> None:
    p.add_argument("--seed", type=int, default=default, help=f"{help} (default {default})")


def add_overwrite(p: Parser, help: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=help)


def add_options(p: Parser, options: Type, names: Sequence[str], prefix: str = "", helps: Optional[Dict[str, str]] = None) -> None:
    """Flags for the fields ``names`` of an options dataclass (fesa.options): ``--{prefix-}{field}``, its type, its
    default and its help, from the dataclass itself; ``helps`` may say more for this command."""
    by_name = {f.name: f for f in fields(options)}
    for name in names:
        f = by_name[name]
        kind = get_args(f.type)[0] if get_origin(f.type) is Union else f.type  # Optional[int] -> int
        said = (helps or {}).get(name, f.metadata.get("help", ""))
        text = said if f.default is None else f"{said} (default {f.default:g})" if kind is float else f"{said} (default {f.default})"
        flag = "--" + (f"{prefix}-{name}" if prefix else name).replace("_", "-")
        p.add_argument(flag, type=kind, default=f.default, help=text, choices=getattr(options, "CHOICES", {}).get(name))


def values(args: argparse.Namespace, names: Sequence[str], prefix: str = "") -> dict:
    """The parsed values of add_options' flags, by field name, to build the options dataclass with."""
    return {name: getattr(args, f"{prefix}_{name}" if prefix else name) for name in names}


def print_scores(m: Dict[str, object], args: argparse.Namespace) -> None:
    """What fesa evaluate and fesa acoustic-baseline print: UA, WA, frame-level figures, the confusion matrix."""
    print(f"{args.split} of {args.fold_dir}: {m['utterances']} utterances")
    print(f"UA {m['ua']:.2f}%   WA {m['wa']:.2f}%   macro-F1 {m['macro_f1']:.2f}%")
    frame = m.get("frame_level") or {}
    if frame:
        focus = "-" if frame["attention_focus"] is None else f"{frame['attention_focus']:.2f}"
        print(
            f"frame level ({frame['utterances']} utterances with true segments): EDER {frame['eder']:.2f}%   "
            f"attention focus {focus} (pooling weight share on emotional segments / their share of time; 1 = none)"
        )
    print(format_confusion(m["confusion"], m["labels"]))
    print(f"wrote {args.out}/predictions.tsv, metrics.json, confusion.png")


def format_confusion(matrix: List[List[int]], labels: List[str]) -> str:
    width = max(6, *(len(label) for label in labels))
    lines = ["true\\pred".ljust(width + 2) + "".join(label.rjust(width) for label in labels)]
    for label, row in zip(labels, matrix):
        lines.append(label.ljust(width + 2) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)
