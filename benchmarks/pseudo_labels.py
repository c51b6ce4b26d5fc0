"""Feature-dump throughput, peak memory and k-means time of `fesa pseudo-labels`, on the demo corpus and on
one 4x larger, with a HuBERT-base-size model (random weights: speed and memory do not depend on them).

Each figure comes from its own `fesa` process, whose peak resident memory is read from wait4():
  dump    --rank 0 --nshard 1: features of the train split only (streamed to disk), then stop
  full    the whole command (dump of every split, k-means on train, labels); --percent keeps the frames
          k-means sees equal across corpus sizes (1 / scale), so its memory stays flat too

    .venv/bin/python benchmarks/pseudo_labels.py [--layer 9] [--clusters 50] [--scales 1,4] [--model base|tiny] [--small]
    .venv/bin/python benchmarks/pseudo_labels.py --before-after    (sklearn + fp32, as before, vs the defaults)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
from common import parse_args, random_hubert  # noqa: E402

FESA = [sys.executable, "-m", "fesa.cli", "-q"]
SMALL = dict(model="tiny", clusters=8, scales="1", utterances_per_speaker=3)  # --small


def run(cmd):
    """Wall time and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode()
    if status != 0:
        raise SystemExit(f"{cmd[3:]} failed:\n{stderr[-3000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def audio_seconds(fold: Path, split: str) -> float:
    lines = (fold / f"{split}.tsv").read_text().splitlines()
    return sum(int(line.split("\t")[1]) for line in lines[1:]) / 16000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--scales", default="1,4")
    parser.add_argument("--model", choices=["base", "tiny"], default="base")
    parser.add_argument(
        "--before-after",
        action="store_true",
        help="only the whole command at scale 1, twice: as it was (--kmeans-backend sklearn --precision fp32) and with today's defaults",
    )
    parser.add_argument("--utterances-per-speaker", type=int, default=30, help="the demo corpus's size at scale 1")
    args = parse_args(parser, SMALL)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt = random_hubert(tmp / "hubert.pt", args.model)
        layer = min(args.layer, 2) if args.model == "tiny" else args.layer
        print(f"model {args.model}, layer {layer}, K={args.clusters}, {os.cpu_count()} CPUs")
        if args.before_after:
            return before_after(tmp, ckpt, layer, args.clusters, args.utterances_per_speaker)
        for scale in (int(s) for s in args.scales.split(",")):
            at_scale(tmp, ckpt, layer, args.clusters, scale, args.utterances_per_speaker * scale)


def at_scale(tmp: Path, ckpt: Path, layer: int, clusters: int, scale: int, utterances_per_speaker: int) -> None:
    corpus, manifests = tmp / f"corpus{scale}", tmp / f"m{scale}"
    subprocess.run([str(c) for c in [*FESA, "make-demo-corpus", corpus, "--utterances-per-speaker", utterances_per_speaker]], check=True)
    subprocess.run([str(c) for c in [*FESA, "prepare-iemocap", corpus, manifests]], check=True, stdout=subprocess.DEVNULL)
    fold = manifests / "fold1"
    common = ["pseudo-labels", "--manifest-dir", fold, "--checkpoint", ckpt, "--layer", layer, "--device", "cpu"]
    dump_s, dump_mb = run(
        [
            *FESA,
            *common,
            "--splits",
            "train",
            "--clusters",
            clusters,
            "--out",
            tmp / "o",
            "--feature-dir",
            tmp / f"f{scale}",
            "--rank",
            "0",
        ]
    )
    out = tmp / f"labels{scale}"
    full_s, full_mb = run([*FESA, *common, "--clusters", clusters, "--out", out, "--percent", 1 / scale])
    info = json.loads((out / "labels.json").read_text())
    train = audio_seconds(fold, "train")
    every = sum(audio_seconds(fold, s) for s in ("train", "valid", "test"))
    print(f"x{scale}: train split {train / 60:.1f} min of audio, all splits {every / 60:.1f} min, {info['frames']['train']} training frames")
    print(f"  dump (train only): {dump_s:.1f} s, {train / dump_s:.1f} s of audio per second (incl. start-up), peak {dump_mb:.0f} MiB")
    print(
        f"  whole command: {full_s:.1f} s (features {info['feature_seconds']:.1f} s, "
        f"{every / info['feature_seconds']:.1f} s of audio per second), "
        f"k-means + labels {info['total_seconds'] - info['feature_seconds']:.1f} s, peak {full_mb:.0f} MiB"
    )


def before_after(tmp: Path, ckpt: Path, layer: int, clusters: int, utterances_per_speaker: int) -> None:
    corpus, manifests = tmp / "corpus", tmp / "m"
    subprocess.run([str(c) for c in [*FESA, "make-demo-corpus", corpus, "--utterances-per-speaker", utterances_per_speaker]], check=True)
    subprocess.run([str(c) for c in [*FESA, "prepare-iemocap", corpus, manifests]], check=True, stdout=subprocess.DEVNULL)
    common = ["pseudo-labels", "--manifest-dir", manifests / "fold1", "--checkpoint", ckpt, "--layer", layer, "--device", "cpu"]
    common += ["--clusters", clusters]
    every = sum(audio_seconds(manifests / "fold1", s) for s in ("train", "valid", "test"))
    print(f"demo corpus fold 1: {every / 60:.1f} min of audio in train, valid and test")
    runs = {"before (sklearn k-means, fp32 features)": ["--kmeans-backend", "sklearn", "--precision", "fp32"], "after (defaults)": []}
    times = {}
    for name, flags in runs.items():
        out = tmp / name.split()[0]
        times[name], mb = run([*FESA, *common, "--out", out, *flags])
        info = json.loads((out / "labels.json").read_text())
        print(
            f"  {name}: {times[name]:.1f} s (features {info['feature_seconds']:.1f} s in {info.get('precision', 'fp32')}, "
            f"k-means {info['kmeans_seconds']:.1f} s, labelling every frame {info['label_seconds']:.1f} s), peak {mb:.0f} MiB"
        )
    before, after = times.values()
    print(f"  whole command: {before / after:.2f}x faster")


if __name__ == "__main__":
    main()
