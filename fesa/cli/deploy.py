"""Deployment: predict (emotion of any recording, frame by frame) and export (ONNX)."""

import argparse
import sys
from pathlib import Path

from fesa.cli.common import Subparsers, add_device, add_options, add_out, add_precision, values
from fesa.errors import FesaError
from fesa.options import SCORING_PRECISION, FrameOptions

FRAME_FIELDS = ("window", "hop", "median", "min_segment")


def add_parsers(sub: Subparsers) -> None:
    _add_predict(sub)
    _add_export(sub)


def _predict(args: argparse.Namespace) -> None:
    from fesa_fairseq.inference.eder import read_segments_json
    from fesa_fairseq.inference.predict import collect_inputs, predict_files
    from fesa_fairseq.inference.recognizer import EmotionRecognizer

    frame_options = values(args, FRAME_FIELDS)
    FrameOptions(**frame_options).check()  # before any file is read
    inputs = collect_inputs(args.inputs)
    reference = read_segments_json(Path(args.reference), reference=True) if args.reference else None
    recognizer = EmotionRecognizer.from_checkpoint(
        args.checkpoint,
        device=args.device,
        precision=args.precision,
        **frame_options,
    )
    s = predict_files(
        recognizer, inputs, Path(args.out), frames=args.frames, plot=args.plot, reference=reference, strict=args.strict, progress=not args.quiet
    )
    for path, why in s["skipped"]:
        print(f"skipped {path}: {why}", file=sys.stderr)
    speed = s["audio_seconds"] / s["seconds"] if s["seconds"] else float("inf")
    print(
        f"{s['files']} files, {s['audio_seconds']:.1f} s of audio in {s['seconds']:.1f} s ({speed:.1f} s of audio per second); "
        f"wrote {args.out}/utterances.tsv, segments.json"
    )
    if s["skipped"]:
        raise FesaError(f"{len(s['skipped'])} of {len(inputs)} inputs could not be read (above); the others were written")


def _add_predict(sub: Subparsers) -> None:
    p = sub.add_parser(
        "predict",
        help="emotion of any recording: utterance label, per-frame posteriors, segments with timestamps",
        description="Runs a fine-tuned classifier (the checkpoint alone) over audio files (wav, flac, ogg; any rate and "
        "channels: mixed to mono, resampled to 16 kHz), folders (searched recursively) and fairseq .tsv manifests. Long "
        "files go through overlapping windows. Writes OUT/utterances.tsv and OUT/segments.json (the ZED recipe's layout).",
    )
    p.add_argument("checkpoint", help="a hubert_emotion_classifier checkpoint (checkpoint_best.pt of a fine-tuning)")
    p.add_argument("inputs", nargs="+", help="audio files, folders, or .tsv manifests")
    add_out(p, "output folder")
    p.add_argument("--frames", action="store_true", help="also write OUT/frames/<utt>.npz: per-frame posteriors and pooling weights")
    p.add_argument("--plot", type=int, default=0, metavar="N", help="timeline pictures of the first N inputs (first 60 s of each)")
    p.add_argument("--reference", help="true segments (fesa convert-segments output), drawn on the timelines")
    add_precision(p, SCORING_PRECISION)
    add_options(p, FrameOptions, FRAME_FIELDS)
    add_device(p)
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable input instead of skipping it")
    p.set_defaults(func=_predict)


def _export(args: argparse.Namespace) -> None:
    try:
        from fesa_fairseq.inference.onnx_export import export_onnx
    except ImportError as e:
        raise FesaError(f"fesa export needs the [export] extra ({e.name} is missing): pip install 'fesa_fairseq[export]' (make install does)") from e
    if not args.onnx.endswith(".onnx"):
        raise FesaError(f"--onnx {args.onnx}: give a file name ending in .onnx")
    r = export_onnx(args.checkpoint, Path(args.onnx), int8=args.int8)
    print(f"classes {r['labels']}; checked on {len(r['lengths'])} lengths ({', '.join(str(n) for n in r['lengths'])} samples):")
    print(f"  fp32: max |logit difference| vs PyTorch {r['max_logit_difference']:.2g}, same label {r['same_label']}")
    if "int8" in r:
        print(f"  int8: max |logit difference| vs PyTorch {r['int8']['max_logit_difference']:.2g}, same label {r['int8']['same_label']}")
    print(f"wrote {', '.join(r['files'].values())}")


def _add_export(sub: Subparsers) -> None:
    p = sub.add_parser(
        "export",
        help="a fine-tuned classifier as an ONNX file (dynamic length): logits, frame posteriors, pooling weights",
        description="Exports the classifier (encoder, pooling, output layer) with torch.onnx (dynamo), checks the file "
        "with onnxruntime against PyTorch on inputs of several lengths (max |logit difference| <= 1e-3, else nothing "
        "is written) and stores the class names in its metadata. Needs the [export] extra (onnx, onnxruntime, onnxscript).",
    )
    p.add_argument("checkpoint", help="a hubert_emotion_classifier checkpoint (checkpoint_best.pt of a fine-tuning)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the file to write")
    p.add_argument("--int8", action="store_true", help="also write OUT.int8.onnx: onnxruntime's dynamic int8 quantisation")
    p.set_defaults(func=_export)
