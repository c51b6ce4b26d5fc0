"""fesa prepare-emobox on a generated corpus in EmoBox's layout: wall time and peak memory, first run (every file
converted) and a rerun (every file reused).

The corpus: N utterances of 1-5 s at 48 kHz stereo (wav, flac and ogg in turn), 4 classes from 5 raw labels, 5
folds without a valid list. Each run is a fresh `fesa prepare-emobox` process; its peak resident memory is the
kernel's (RUSAGE_CHILDREN).

    .venv/bin/python benchmarks/prepare_emobox.py [--utterances 5000] [--small]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
from common import parse_args  # noqa: E402

SMALL = dict(utterances=25)  # --small: 5 a fold
RAW = {"neutral": "neu", "happy": "hap", "excited": "hap", "angry": "ang", "sad": "sad"}
FORMATS = ("wav", "flac", "ogg")


def make_corpus(base: Path, n: int, folds: int = 5) -> Path:
    rng = np.random.default_rng(0)
    corpus, audio = base / "data" / "bench", base / "audio"
    rows = []
    for i in range(n):
        rel = f"bench/{i % 50}/u{i}.{FORMATS[i % 3]}"
        (audio / rel).parent.mkdir(parents=True, exist_ok=True)
        seconds = rng.uniform(1, 5)
        wav = (0.1 * rng.standard_normal((int(48000 * seconds), 2))).astype(np.float32)
        sf.write(str(audio / rel), wav, 48000)
        rows.append({"key": f"u{i}", "wav": rel, "emo": list(RAW)[i % 5], "sample_rate": 48000, "channel": 2, "fold": (i // 5) % folds})
    corpus.mkdir(parents=True)
    (corpus / "label_map.json").write_text(json.dumps(RAW))
    (corpus / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for k in range(1, folds + 1):
        (corpus / f"fold_{k}").mkdir()
        for split, keep in (("train", lambda r: r["fold"] != k - 1), ("test", lambda r: r["fold"] == k - 1)):
            (corpus / f"fold_{k}" / f"bench_{split}_fold_{k}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if keep(r)))
    return corpus


def run(corpus: Path, out: Path, *extra: str) -> dict:
    fesa = str(Path(sys.executable).parent / "fesa")
    start = time.perf_counter()
    subprocess.run([fesa, "-q", "prepare-emobox", str(corpus), str(out), "--audio-root", str(corpus.parent.parent / "audio"), *extra], check=True)
    return {"seconds": round(time.perf_counter() - start, 1), "peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=5000)
    args = parse_args(parser, SMALL)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        corpus = make_corpus(Path(tmp), args.utterances)
        hours = sum(sf.info(str(p)).duration for p in (Path(tmp) / "audio").rglob("u*.*")) / 3600
        print(f"generated {args.utterances} utterances ({hours:.1f} h at 48 kHz stereo) in {time.perf_counter() - start:.0f} s")
        first = run(corpus, Path(tmp) / "out")
        print(f"first run (all converted): {first['seconds']} s, peak {first['peak_mb']} MB")
        again = run(corpus, Path(tmp) / "out", "--overwrite")
        print(f"rerun (all reused): {again['seconds']} s, peak {max(first['peak_mb'], again['peak_mb'])} MB (the larger of the two runs)")


if __name__ == "__main__":
    main()
