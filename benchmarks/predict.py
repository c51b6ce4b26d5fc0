"""fesa predict on a short and a long recording with the same model: throughput and peak memory; fesa evaluate's throughput.

A classifier is fine-tuned for one update (fairseq-hydra-train, finetune/tiny.yaml) from the demo's source model
(--size tiny) or a random HuBERT base (--size base), then each recording is predicted in a fresh process
(EmotionRecognizer.predict, windows of 20 s every 15 s), which reports its own peak resident memory.

    .venv/bin/python benchmarks/predict.py [--size tiny|base] [--short 60] [--long 1800] [--evaluate 200] [--device cpu|cuda] [--small]

--batch-seconds 0,20,60 instead compares batch sizes in one process (same model, same inputs, each size timed
--repeats times in turn, the best kept): a --long recording (its windows) and --utterances IEMOCAP-like
utterances (fesa evaluate's case: whole utterances, sorted by length), on --device with --precision; every
batched result is checked against one-at-a-time (largest probability difference).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
from common import HYDRA_TRAIN, SR, hubert_base_checkpoint, iemocap_like_seconds, parse_args  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SMALL = dict(size="tiny", short=5.0, long=20.0, evaluate=6)  # --small
EMOTIONS = ("neu", "hap", "ang", "sad")
CHILD = """
import json, resource, sys, time
import torch
from fesa.inference.recognizer import EmotionRecognizer
rec = EmotionRecognizer.from_checkpoint(sys.argv[1], device=sys.argv[3])
start = time.perf_counter()
pred = rec.predict(sys.argv[2])
seconds = time.perf_counter() - start
print(json.dumps({"audio": pred.duration, "seconds": seconds, "frames": len(pred.frame_posteriors),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0}))
"""

BATCHED = """
import json, sys, time
import numpy as np
from fesa_fairseq.data.audio import AudioSource
from fesa.inference.recognizer import EmotionRecognizer
ckpt, device, precision = sys.argv[1:4]
wavs, sizes, repeats = json.loads(sys.argv[4]), json.loads(sys.argv[5]), int(sys.argv[6])
recs = {s: EmotionRecognizer.from_checkpoint(ckpt, device=device, precision=precision, batch_seconds=s) for s in sizes}
out = {}
for case, (window, paths) in wavs.items():
    best, probs = {}, {}
    for _ in range(repeats):
        for s, rec in recs.items():
            rec.window = window
            start = time.perf_counter()
            preds = list(rec.predict_many(rec.source(p) for p in paths))
            if device.startswith("cuda"):
                import torch; torch.cuda.synchronize()
            best[s] = min(best.get(s, 1e9), time.perf_counter() - start)
            probs[s] = np.stack([p.probabilities for p in preds])
    audio = sum(p.duration for p in preds)
    out[case] = {str(s): {"seconds": best[s], "audio": audio, "max_diff": float(np.abs(probs[s] - probs[sizes[0]]).max())} for s in sizes}
print(json.dumps(out))
"""


def noise(path: Path, seconds: float, seed: int) -> Path:
    """Written in blocks: the benchmark itself must not hold an hour of audio."""
    rng = np.random.default_rng(seed)
    with sf.SoundFile(str(path), "w", samplerate=SR, channels=1, subtype="PCM_16") as f:
        for _ in range(int(seconds // 60)):
            f.write(0.1 * rng.standard_normal(60 * SR))
        f.write(0.1 * rng.standard_normal(int(seconds % 60 * SR)))
    return path


def classifier(work: Path, size: str) -> Path:
    data = work / "fold"
    data.mkdir()
    rows, labels = [str(work / "wav")], []
    (work / "wav").mkdir()
    for i in range(8):
        noise(work / "wav" / f"u{i}.wav", 1.5, i)
        rows.append(f"u{i}.wav\t{int(1.5 * SR)}")
        labels.append(EMOTIONS[i % 4])
    for split in ("train", "valid"):
        (data / f"{split}.tsv").write_text("\n".join(rows) + "\n")
        (data / f"{split}.emo").write_text("\n".join(labels) + "\n")
    (data / "dict.emo.txt").write_text("".join(f"{e} 2\n" for e in EMOTIONS))
    source = REPO / "examples" / "demo" / "source_model.pt" if size == "tiny" else hubert_base_checkpoint(work / "base.pt")
    cmd = [
        HYDRA_TRAIN,
        "--config-dir",
        str(REPO / "fesa_fairseq" / "config" / "finetune"),
        "--config-name",
        "tiny",
        f"common.user_dir={REPO / 'fesa_fairseq'}",
        f"hydra.run.dir={work / 'ft'}",
        f"task.data={data}",
        f"model.w2v_path={source}",
        "optimization.max_update=1",
        "common.cpu=true",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return work / "ft" / "checkpoints" / "checkpoint_last.pt"


def compare_batches(ckpt: Path, work: Path, args: argparse.Namespace) -> None:
    sizes = [float(x) for x in args.batch_seconds.split(",")]
    utts = [str(noise(work / f"utt{i}.wav", float(sec), i)) for i, sec in enumerate(iemocap_like_seconds(args.utterances, seed=1))]
    cases = {"long": [20.0, [str(noise(work / "long.wav", args.long, 99))]], "utterances": [None, utts]}
    cmd = [sys.executable, "-c", BATCHED, str(ckpt), args.device, args.precision, json.dumps(cases), json.dumps(sizes), str(args.repeats)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    runs = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"fesa predict / evaluate scoring, {args.size} classifier, {args.device}, {args.precision}, best of {args.repeats}")
    print(f"{'case':>11s} {'batch s':>8s} {'audio s':>8s} {'s taken':>8s} {'audio s / s':>12s} {'vs one at a time':>17s} {'max |dp|':>9s}")
    for case, by_size in runs.items():
        base = by_size[str(sizes[0])]["seconds"]
        for size, r in by_size.items():
            speed = r["audio"] / r["seconds"]
            print(
                f"{case:>11s} {float(size):8g} {r['audio']:8.0f} {r['seconds']:8.2f} {speed:12.1f} {base / r['seconds']:16.2f}x {r['max_diff']:9.1e}"
            )


def evaluate(work: Path, ckpt: Path, n: int, device: str) -> dict:
    """The whole `fesa evaluate` command, start-up included, on a test split of n IEMOCAP-like noise utterances."""
    fold, wavs = work / "fold", work / "test"
    wavs.mkdir()
    rows, labels = [str(wavs)], []
    for i, seconds in enumerate(iemocap_like_seconds(n, seed=2)):
        noise(wavs / f"t{i}.wav", seconds, 1000 + i)
        rows.append(f"t{i}.wav\t{int(seconds * SR)}")
        labels.append(EMOTIONS[i % 4])
    (fold / "test.tsv").write_text("\n".join(rows) + "\n")
    (fold / "test.emo").write_text("\n".join(labels) + "\n")
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "fesa.cli", "-q", "evaluate", str(ckpt), str(fold), "--out", str(work / "eval"), "--device", device]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return {"utterances": n, "audio": sum(int(r.split("\t")[1]) for r in rows[1:]) / SR, "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=("tiny", "base"), default="tiny")
    ap.add_argument("--short", type=float, default=60.0, help="seconds of the short recording (default 60)")
    ap.add_argument("--long", type=float, default=1800.0, help="seconds of the long recording (default 1800)")
    ap.add_argument("--batch-seconds", help="compare these batch sizes (seconds of audio, comma-separated; the first is the reference, e.g. 0,20,60)")
    ap.add_argument("--utterances", type=int, default=40, help="IEMOCAP-like utterances for --batch-seconds (default 40)")
    ap.add_argument("--repeats", type=int, default=2, help="timings per batch size for --batch-seconds, best kept (default 2)")
    ap.add_argument("--precision", default="fp32", help="for --batch-seconds: fp32, bf16, fp16 (default fp32)")
    ap.add_argument("--evaluate", type=int, default=200, help="utterances of the test split fesa evaluate scores (0: skip)")
    ap.add_argument("--device", default="cpu", help="where fesa predict runs: cpu, cuda, auto (the classifier is trained on the CPU)")
    args = parse_args(ap, SMALL)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = classifier(work, args.size)
        if args.batch_seconds:
            return compare_batches(ckpt, work, args)
        runs = {}
        for name, seconds in (("short", args.short), ("long", args.long)):
            wav = noise(work / f"{name}.wav", seconds, 99)
            res = subprocess.run([sys.executable, "-c", CHILD, str(ckpt), str(wav), args.device], capture_output=True, text=True)
            if res.returncode != 0:
                raise SystemExit(res.stderr[-3000:])
            runs[name] = json.loads(res.stdout.strip().splitlines()[-1])
        scored = evaluate(work, ckpt, args.evaluate, args.device) if args.evaluate else None
    print(f"fesa predict, {args.size} classifier, device {args.device}, windows of 20 s every 15 s")
    print(f"{'recording':>10s} {'audio s':>9s} {'frames':>8s} {'s taken':>8s} {'audio s / s':>12s} {'peak MB':>8s} {'GPU peak MB':>12s}")
    for name, r in runs.items():
        row = f"{r['audio']:9.0f} {r['frames']:8d} {r['seconds']:8.1f} {r['audio'] / r['seconds']:12.1f} {r['peak_mb']:8.0f} {r['gpu_peak_mb']:12.0f}"
        print(f"{name:>10s} {row}")
    print(f"peak memory, long / short: {runs['long']['peak_mb'] / runs['short']['peak_mb']:.2f}")
    if scored:
        speed = scored["audio"] / scored["seconds"]
        print(
            f"fesa evaluate, {scored['utterances']} utterances, {scored['audio']:.0f} s of audio: "
            f"{scored['seconds']:.1f} s, {speed:.1f} audio s / s (incl. start-up)"
        )


if __name__ == "__main__":
    main()
