"""Deployment: predict (emotion of any recording, frame by frame), export (ONNX, transformers) and import-hf."""

import argparse
import sys
from pathlib import Path

from fesa.cli.common import Subparsers, add_device, add_options, add_own_out, values
from fesa.cli.scoring import SCORING_FIELDS
from fesa.errors import FesaError
from fesa.options import SEGMENTS_FILE, FrameOptions, ScoringOptions

FRAME_FIELDS = ("window", "hop", "median", "min_segment")


def add_parsers(sub: Subparsers) -> None:
    _add_predict(sub)
    _add_export(sub)
    _add_import_hf(sub)


def _need_transformers(command: str) -> None:
    """The [hf] extra, or an error with the fix; transformers also fails to import beside a broken torchaudio."""
    try:
        import safetensors  # noqa: F401
        import transformers
    except ImportError as e:
        if e.name in ("transformers", "safetensors"):
            raise FesaError(f"{command} needs the [hf] extra ({e.name} is missing): pip install 'fesa_fairseq[hf]' (make install does)") from e
        raise _import_failed(command, e) from e
    except OSError as e:
        raise _import_failed(command, e) from e
    transformers.utils.logging.disable_progress_bar()  # the checks load small folders: a bar would say nothing


def _import_failed(command: str, error: Exception) -> FesaError:
    return FesaError(
        f"{command}: transformers could not be imported ({error}); a torchaudio built for another torch is the usual cause: "
        "pip uninstall torchaudio (nothing here uses it), or install the torchaudio of your torch"
    )


def _predict(args: argparse.Namespace) -> None:
    from fesa.inference.eder import read_segments_json
    from fesa.inference.predict import collect_inputs, predict_files
    from fesa.inference.recognizer import EmotionRecognizer

    frame_options = values(args, FRAME_FIELDS)
    FrameOptions(**frame_options).check()  # before any file is read
    ScoringOptions(**values(args, SCORING_FIELDS)).check()
    inputs = collect_inputs(args.inputs)
    reference = read_segments_json(Path(args.reference), reference=True) if args.reference else None
    recognizer = EmotionRecognizer.from_checkpoint(
        args.checkpoint,
        device=args.device,
        precision=args.precision,
        batch_seconds=args.batch_seconds,
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
    add_own_out(p, "output folder", (SEGMENTS_FILE,))
    p.add_argument("--frames", action="store_true", help="also write OUT/frames/<utt>.npz: per-frame posteriors and pooling weights")
    p.add_argument("--plot", type=int, default=0, metavar="N", help="timeline pictures of the first N inputs (first 60 s of each)")
    p.add_argument("--reference", help="true segments (fesa convert-segments output), drawn on the timelines")
    add_options(p, ScoringOptions, SCORING_FIELDS)
    add_options(p, FrameOptions, FRAME_FIELDS)
    add_device(p)
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable input instead of skipping it")
    p.set_defaults(func=_predict)


def _export(args: argparse.Namespace) -> None:
    """Every output is checked before anything is read; the folder goes first, so an ONNX file inside it stays."""
    if not (args.onnx or args.hf):
        raise FesaError("say what to write: --onnx OUT.onnx, --hf FOLDER, or both")
    if args.hf:
        _need_transformers("fesa export --hf")
        from fesa.huggingface.export_hf import check_output

        check_output(args.checkpoint, Path(args.hf), args.overwrite)
    if args.onnx:
        _need_onnx()
        from fesa.inference.onnx_export import onnx_outputs

        onnx_outputs(args.checkpoint, Path(args.onnx), args.int8, args.overwrite)
    if args.hf:
        _export_hf(args)
    if args.onnx:
        _export_onnx(args)


def _need_onnx() -> None:
    try:
        import onnx  # noqa: F401  (the [export] extra; imported by export_onnx when it runs)
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise FesaError(f"fesa export needs the [export] extra ({e.name} is missing): pip install 'fesa_fairseq[export]' (make install does)") from e


def _export_onnx(args: argparse.Namespace) -> None:
    from fesa.inference.onnx_export import export_onnx

    r = export_onnx(args.checkpoint, Path(args.onnx), int8=args.int8, overwrite=args.overwrite)
    print(f"classes {r['labels']}; checked on {len(r['lengths'])} lengths ({', '.join(str(n) for n in r['lengths'])} samples):")
    print(f"  fp32: max |logit difference| vs PyTorch {r['max_logit_difference']:.2g}, same label {r['same_label']}")
    if "int8" in r:
        print(f"  int8: max |logit difference| vs PyTorch {r['int8']['max_logit_difference']:.2g}, same label {r['int8']['same_label']}")
    print(f"wrote {', '.join(r['files'].values())}")


def _export_hf(args: argparse.Namespace) -> None:
    from fesa.huggingface.export_hf import export_hf

    r = export_hf(args.checkpoint, Path(args.hf), overwrite=args.overwrite, metrics=Path(args.metrics) if args.metrics else None)
    extra = "".join(f", {k[4:-11].replace('_', ' ')} {v:.2g}" for k, v in r.items() if k.startswith("max_") and k != "max_logits_difference")
    print(f"{r['class']}; classes {r['labels']}; checked with transformers on {len(r['lengths'])} lengths:")
    print(f"  max |logit difference| {r['max_logits_difference']:.2g}{extra}, same label {r['same_label']}")
    scored = r["scores"].get("model")
    card = f"UA {scored['ua']} on {r['scores'].get('fold')}" if scored else "no scores (give --metrics)"
    print(f"model card: {card}; wrote {r['out']}")


def _add_export(sub: Subparsers) -> None:
    p = sub.add_parser(
        "export",
        help="a fine-tuned classifier as an ONNX file or a transformers folder: logits, frame posteriors, pooling weights",
        description="--onnx: the classifier (encoder, pooling, output layer) through torch.onnx (dynamo), checked with "
        "onnxruntime against PyTorch on inputs of several lengths (max |logit difference| <= 1e-3, else nothing is "
        "written), class names in its metadata; needs the [export] extra. --hf: a folder transformers loads (mean pooling: "
        "HubertForSequenceClassification, for pipeline('audio-classification'); attention pooling: HubertModel plus "
        "modeling_fesa.py, trust_remote_code=True), checked with transformers (max |logit difference| <= 1e-4), with a "
        "model card of the fold's scores; needs the [hf] extra.",
    )
    p.add_argument("checkpoint", help="a hubert_emotion_classifier checkpoint (checkpoint_best.pt of a fine-tuning)")
    p.add_argument("--onnx", metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--int8", action="store_true", help="also write OUT.int8.onnx: onnxruntime's dynamic int8 quantisation")
    p.add_argument("--hf", metavar="FOLDER", help="the transformers folder to write (config.json, model.safetensors, README.md, ...)")
    p.add_argument("--metrics", help="fesa evaluate's metrics.json for the model card (default: found beside the checkpoint in a fesa run)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ONNX file, or a folder an earlier fesa export --hf wrote")
    p.set_defaults(func=_export)


def _import_hf(args: argparse.Namespace) -> None:
    _need_transformers("fesa import-hf")
    from fesa.huggingface.import_hf import import_snapshot

    r = import_snapshot(Path(args.folder), Path(args.out), overwrite=args.overwrite)
    layers = ", ".join(f"{d:.2g}" for d in r["differences"][:-1])
    print(f"{r['layers']} layers; max |difference| vs transformers per layer: {layers}; final output {r['differences'][-1]:.2g}")
    if r["heads_left_out"]:
        print(f"left out (not part of the encoder): {', '.join(r['heads_left_out'])}")
    print(f"waveform normalisation: {r['normalize']}; wrote {r['out']} (fairseq hubert / hubert_pretraining)")


def _add_import_hf(sub: Subparsers) -> None:
    p = sub.add_parser(
        "import-hf",
        help="a transformers HuBERT or wav2vec 2.0 snapshot as a fairseq HuBERT checkpoint (for source_checkpoint)",
        description="Reads a local transformers snapshot (config.json and model.safetensors or pytorch_model.bin, as "
        "tensors only: no code in it runs) of HubertModel, HubertForCTC, Wav2Vec2Model or Wav2Vec2ForCTC (or a classifier's "
        "encoder) and writes a "
        "fairseq checkpoint of stock fairseq's hubert model, which fesa run takes as source_checkpoint and fesa "
        "pseudo-labels as --checkpoint. Heads (CTC, classifiers) are left out; the pretraining head starts afresh. "
        "Nothing is written unless every layer's output equals transformers' to 1e-4 on noise. Needs the [hf] extra.",
    )
    p.add_argument("folder", help="the snapshot folder (for example a local copy of facebook/hubert-base-ls960)")
    p.add_argument("--out", required=True, metavar="CKPT.pt", help="the fairseq checkpoint to write")
    p.add_argument("--overwrite", action="store_true", help="replace CKPT.pt if it exists")
    p.set_defaults(func=_import_hf)
