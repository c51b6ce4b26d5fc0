"""Feature-dump speed and label agreement under --precision, against stock fairseq's dump_hubert_feature reader.

Side by side in one run, on the same utterances of the demo corpus (the training split of fold 1):
  stock   fairseq's examples/hubert/simple_kmeans/dump_hubert_feature.HubertFeatureReader, fp32 (it calls .cuda():
          forced onto the CPU inside this benchmark only)
  fp32    fesa's HubertFeatureReader, --precision fp32
  bf16    fesa's HubertFeatureReader, --precision bf16 (autocast)
Speed: seconds of audio per second of wall time, after one warm-up utterance. Agreement: k-means (faiss, K) fitted
on the fp32 features, then every frame of the fp32 and of the bf16 features labelled through those same
centroids; the share of frames whose label is the same. Cosine: mean per-frame cosine similarity bf16 vs fp32.

  --model base    a randomly initialised HuBERT base (12 x 768; speed does not depend on the weights)
  --checkpoint X  any HuBERT-family checkpoint, e.g. a trained one (demo_out/exp/fold1/tapt-finetune/...)

    .venv/bin/python benchmarks/precision.py [--model base|tiny] [--layer 9] [--seconds 240] [--clusters 50] [--small]
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Tuple

import fairseq
import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py
sys.path.insert(0, str(Path(fairseq.__file__).parent / "examples/hubert/simple_kmeans"))  # fairseq's own reader, as its script runs
from dump_hubert_feature import HubertFeatureReader as StockReader  # noqa: E402

from fesa.corpora.demo import make_demo_corpus  # noqa: E402
from fesa.corpora.iemocap import prepare_iemocap  # noqa: E402
from fesa.devices import cpu_has_bf16  # noqa: E402
from fesa.labels.kmeans_backends import assign, fit_kmeans_model  # noqa: E402
from fesa.labels.readers import HubertFeatureReader  # noqa: E402
from fesa_fairseq.data.files import read_manifest

from common import parse_args, random_hubert  # noqa: E402

CPU = torch.device("cpu")
SMALL = dict(model="tiny", layer=2, seconds=8.0, clusters=8, utterances_per_speaker=3)  # --small


def demo_fold(work: Path, utterances_per_speaker: int) -> Path:
    """Fold 1 of a demo corpus made here."""
    make_demo_corpus(work / "corpus", utterances_per_speaker=utterances_per_speaker, progress=False)
    prepare_iemocap(work / "corpus", work / "manifests", progress=False, check_totals=False)
    return work / "manifests" / "fold1"


def utterances(fold: Path, seconds: float) -> List[Tuple[str, int]]:
    root, rows = read_manifest(fold / "train.tsv")
    chosen, total = [], 0
    for path, n in rows:
        chosen.append((f"{root}/{path}", n))
        total += n
        if total >= seconds * 16000:
            break
    return chosen


def timed(get_feats: Callable, items: List[Tuple[str, int]]) -> Tuple[float, np.ndarray]:
    get_feats(*items[0])  # warm-up: first-call allocations and kernel selection
    start = time.perf_counter()
    feats = [get_feats(path, n) for path, n in items]
    speed = sum(n for _, n in items) / 16000 / (time.perf_counter() - start)
    return speed, torch.cat([torch.as_tensor(f).float() for f in feats]).numpy()


def stock_reader(checkpoint: str, layer: int) -> StockReader:
    """fairseq's reader, its .cuda() calls made no-ops for this process only. Its audio loader goes through
    torchaudio, which does not load beside torch 2.13 (docs/fairseq-notes.md): the 16 kHz mono wavs are read with
    soundfile instead, which is what that loader returns for them; the model path is fairseq's."""
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.Tensor.cuda = lambda self, *a, **k: self
    reader = StockReader(checkpoint, layer)
    reader.read_audio = lambda path, ref_len=None: sf.read(path, dtype="float32")[0]
    return reader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["base", "tiny"], default="base", help="a random HuBERT base, or the tiny HuBERT")
    parser.add_argument("--checkpoint", help="use this checkpoint instead of a random HuBERT base")
    parser.add_argument("--layer", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=240.0, help="seconds of training audio to dump (default 240)")
    parser.add_argument("--clusters", type=int, default=50)
    parser.add_argument("--utterances-per-speaker", type=int, default=30, help="size of the demo corpus made here")
    args = parse_args(parser, SMALL)
    if not cpu_has_bf16():
        raise SystemExit("this CPU has no bf16 instructions: --precision auto keeps fp32 here, nothing to compare")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = args.checkpoint or str(random_hubert(tmp / "hubert.pt", args.model))
        items = utterances(demo_fold(tmp, args.utterances_per_speaker), args.seconds)
        audio = sum(n for _, n in items) / 16000
        source = args.checkpoint or f"random HuBERT {args.model}"
        print(f"{source}, layer {args.layer}, {len(items)} utterances, {audio:.0f} s of audio")
        print(f"CPU: {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}")
        stock = stock_reader(checkpoint, args.layer)
        speed_stock, f_stock = timed(stock.get_feats, items)
        del stock
        speeds, feats = {}, {}
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            reader = HubertFeatureReader(checkpoint, args.layer, CPU, precision=dtype)
            speeds[name], feats[name] = timed(reader.get_feats, items)
        assert np.allclose(f_stock, feats["fp32"], atol=1e-4), "fesa's fp32 features differ from fairseq's reader"
        model = fit_kmeans_model(feats["fp32"], args.clusters, "faiss", seed=0)
        agreement = float((assign(model, feats["fp32"]) == assign(model, feats["bf16"])).mean())
        a, b = torch.from_numpy(feats["fp32"]), torch.from_numpy(feats["bf16"])
        cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())
        print("| reader | s of audio / s | vs stock |")
        print("|---|---|---|")
        print(f"| stock fairseq dump_hubert_feature (fp32, CPU) | {speed_stock:.2f} | 1.00x |")
        for name in ("fp32", "bf16"):
            print(f"| fesa --precision {name} | {speeds[name]:.2f} | {speeds[name] / speed_stock:.2f}x |")
        print(f"bf16 vs fp32 through the same K={args.clusters} centroids: label agreement {agreement:.4f}, mean cosine {cosine:.5f}")


if __name__ == "__main__":
    main()
