"""Test-split UA and speed of the demo's classifiers: PyTorch fp32 / bf16 against ONNX fp32 / int8, fold by fold.

For each fold of an experiment (default demo_out/exp, made by `make demo`) and each of its models (the baseline,
tapt-finetune, and the method, finetune/*), every test utterance is scored alone by
  torch fp32   the checkpoint's forward, as fesa evaluate / fesa predict run it
  torch bf16   the same under CPU bf16 autocast (--precision bf16)
  onnx fp32    fesa export's file in onnxruntime
  onnx int8    fesa export --int8's file (dynamic int8 quantisation)
and UA is computed with the pipeline's own scoring. Speed: seconds of audio per second over the test split, one
utterance at a time, the model already loaded (each path timed in the same process, one after the other).

    .venv/bin/python benchmarks/export.py [--exp demo_out/exp] [--folds 1,2,3,4,5] [--small: fold 1, 4 utterances]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import onnxruntime
import torch
from fairseq import checkpoint_utils

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
from fesa.devices import cpu_has_bf16
from fesa.inference.onnx_export import export_onnx
from fesa_fairseq.data.audio import read_audio
from fesa_fairseq.data.labels import read_labelled_split
from fesa_fairseq.scoring import confusion_matrix, counts_of, unweighted_accuracy

from common import parse_args  # noqa: E402

SMALL = dict(folds="1", utterances=4)  # --small
PATHS = ("torch fp32", "torch bf16", "onnx fp32", "onnx int8")


def score(run: Callable[[np.ndarray], np.ndarray], wavs: List[np.ndarray], targets: List[int], classes: int) -> Dict[str, float]:
    run(wavs[0])  # warm-up
    start = time.perf_counter()
    predictions = [int(np.argmax(run(w))) for w in wavs]
    seconds = time.perf_counter() - start
    ua = unweighted_accuracy(counts_of(confusion_matrix(targets, np.array(predictions), classes)))
    return {"ua": ua, "speed": sum(len(w) for w in wavs) / 16000 / seconds}


def torch_runner(model, bf16: bool) -> Callable[[np.ndarray], np.ndarray]:
    @torch.inference_mode()
    def run(wav: np.ndarray) -> np.ndarray:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(torch.from_numpy(wav)[None], None)["logits"].float().numpy()[0]

    return run


def onnx_runner(path: str) -> Callable[[np.ndarray], np.ndarray]:
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    return lambda wav: session.run(["logits"], {"waveform": wav[None]})[0][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default="demo_out/exp")
    parser.add_argument("--folds", default="1,2,3,4,5")
    parser.add_argument("--utterances", type=int, default=None, help="score only each fold's first N test utterances")
    args = parse_args(parser, SMALL)
    if not cpu_has_bf16():
        raise SystemExit("this CPU has no bf16 instructions: the bf16 column would be emulated")
    exp = Path(args.exp)
    results: Dict[str, Dict[str, List[Dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k in args.folds.split(","):
            fold = exp / "manifests" / f"fold{k}"
            test = read_labelled_split(fold, "test")
            wavs = [read_audio(p, 16000, n) for p, n in zip(test.paths, test.sizes)][: args.utterances]
            targets = list(test.targets)[: args.utterances]
            models = {"baseline": exp / f"fold{k}" / "tapt-finetune"} | {
                f"method {d.name}": d for d in sorted((exp / f"fold{k}" / "finetune").iterdir())
            }
            for name, run_dir in models.items():
                checkpoint = str(run_dir / "checkpoints" / "checkpoint_best.pt")
                (model,), _, _ = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": str(fold)})
                model.eval()
                onnx = Path(tmp) / f"f{k}_{name.split()[0]}.onnx"
                export_onnx(checkpoint, onnx, int8=True, overwrite=True)  # a file of the temporary folder, per model
                runners = {
                    "torch fp32": torch_runner(model, False),
                    "torch bf16": torch_runner(model, True),
                    "onnx fp32": onnx_runner(str(onnx)),
                    "onnx int8": onnx_runner(str(onnx.with_name(f"{onnx.stem}.int8.onnx"))),
                }
                row = {p: score(r, wavs, targets, len(test.labels)) for p, r in runners.items()}
                results.setdefault(name, {p: [] for p in PATHS})
                for p in PATHS:
                    results[name][p].append(row[p])
                print(f"fold {k} {name}: " + ", ".join(f"{p} UA {row[p]['ua']:.2f} ({row[p]['speed']:.0f} s/s)" for p in PATHS), flush=True)
    print(f"\n{torch.get_num_threads()} threads, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}")
    print("| model | " + " | ".join(f"{p} UA" for p in PATHS) + " | largest UA change | onnx int8 speed / torch fp32 |")
    print("|---|" + "---|" * (len(PATHS) + 2))
    for name, per in results.items():
        uas = {p: [r["ua"] for r in per[p]] for p in PATHS}
        means = {p: statistics.mean(uas[p]) for p in PATHS}
        change = max(abs(a - b) for p in PATHS[1:] for a, b in zip(uas[p], uas["torch fp32"]))
        speedup = statistics.mean(r["speed"] for r in per["onnx int8"]) / statistics.mean(r["speed"] for r in per["torch fp32"])
        print(f"| {name} | " + " | ".join(f"{means[p]:.2f}" for p in PATHS) + f" | {change:.2f} (any fold) | {speedup:.2f}x |")


if __name__ == "__main__":
    main()
