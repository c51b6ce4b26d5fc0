"""Where the time of a HuBERT-base feature dump goes on this machine, and what batching or threads would give.

On the same utterances of the demo corpus (fold 1 training split), under bf16 autocast (`fesa pseudo-labels`'
default where the CPU has bf16) unless --precision fp32:
  modules    wall time per module (CNN front end, its first block, positional convolution, each transformer layer)
             of fesa's reader, one utterance at a time, as `fesa pseudo-labels` runs
  threads    the same with torch on 1 thread: two 1-thread processes on two shards could at best double that
  batching   the transformer layers (the part a padded batch can take; the group-normalised CNN cannot) on the
             same CNN outputs, one utterance at a time vs length-sorted padded batches with a padding mask

    .venv/bin/python benchmarks/feature_dump_profile.py [--seconds 300] [--layer 9] [--precision bf16|fp32] [--model tiny] [--small]
"""

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import torch

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py
from precision import demo_fold, utterances  # noqa: E402

from fesa.devices import autocast  # noqa: E402
from fesa.labels.readers import HubertFeatureReader  # noqa: E402

from common import parse_args, random_hubert  # noqa: E402

CPU = torch.device("cpu")
SMALL = dict(model="tiny", layer=2, seconds=8.0, utterances_per_speaker=3)  # --small


def module_times(reader: HubertFeatureReader, paths, layer: int) -> Dict[str, float]:
    hubert, times, started = reader.hubert, defaultdict(float), {}
    modules = {"CNN front end": hubert.feature_extractor, "  its first block (conv, group norm)": hubert.feature_extractor.conv_layers[0]}
    modules["positional convolution"] = hubert.encoder.pos_conv
    modules.update({f"transformer layer {i + 1}": m for i, m in enumerate(hubert.encoder.layers[:layer])})

    def begin(name: str):
        return lambda module, args: started.__setitem__(name, time.perf_counter())

    def end(name: str):
        return lambda module, args, output: times.__setitem__(name, times[name] + time.perf_counter() - started[name])

    handles = []
    for name, module in modules.items():
        times[name] = 0.0
        handles += [module.register_forward_pre_hook(begin(name)), module.register_forward_hook(end(name))]
    times["total"] = dump(reader, paths)
    for handle in handles:
        handle.remove()
    return times


def dump(reader: HubertFeatureReader, paths) -> float:
    reader.get_feats(*paths[0])  # warm-up
    start = time.perf_counter()
    for path, n in paths:
        reader.get_feats(path, n)
    return time.perf_counter() - start


@torch.inference_mode()
def transformer_times(reader: HubertFeatureReader, paths, layer: int, batch_sizes: List[int]) -> Dict[int, float]:
    hubert, feats = reader.hubert, []
    project = hubert.post_extract_proj or torch.nn.Identity()  # absent where the CNN's width is the encoder's
    with autocast(CPU, reader.precision):
        for path, n in paths:
            f = hubert.feature_extractor(reader._source(path, n)).transpose(1, 2)
            feats.append(project(hubert.layer_norm(f.float()))[0])
        out = {}
        for size in batch_sizes:
            order = sorted(range(len(feats)), key=lambda i: len(feats[i]))
            start = time.perf_counter()
            for first in range(0, len(order), size):
                group = [feats[i] for i in order[first : first + size]]
                x = torch.nn.utils.rnn.pad_sequence(group, batch_first=True)
                mask = torch.arange(x.size(1))[None] >= torch.tensor([len(g) for g in group])[:, None]
                hubert.encoder(x, padding_mask=mask if size > 1 else None, layer=layer - 1)
            out[size] = time.perf_counter() - start
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300, help="audio to dump, from the demo's fold 1 training split")
    ap.add_argument("--layer", type=int, default=9)
    ap.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    ap.add_argument("--model", choices=["base", "tiny"], default="base", help="a random HuBERT base, or the tiny HuBERT")
    ap.add_argument("--utterances-per-speaker", type=int, default=30, help="size of the demo corpus made here")
    args = parse_args(ap, SMALL)
    precision = torch.bfloat16 if args.precision == "bf16" else None
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = random_hubert(Path(tmp) / "hubert.pt", args.model)
        paths = utterances(demo_fold(Path(tmp), args.utterances_per_speaker), args.seconds)
        audio = sum(n for _, n in paths) / 16000
        reader = HubertFeatureReader(str(ckpt), args.layer, CPU, precision=precision)
        threads = torch.get_num_threads()
        print(f"HuBERT {args.model}, layer {args.layer}, {args.precision}, {len(paths)} utterances, {audio:.0f} s of audio, {threads} threads")
        times = module_times(reader, paths, args.layer)
        total = times.pop("total")
        print(f"  one utterance at a time: {total:.2f} s ({audio / total:.1f} s of audio per second)")
        for name, seconds in times.items():
            print(f"    {name:<38s} {seconds:6.2f} s  {100 * seconds / total:5.1f} %")
        torch.set_num_threads(1)
        single = dump(reader, paths)
        torch.set_num_threads(threads)
        print(f"  1 thread: {single:.2f} s; {threads} threads are {single / total:.2f}x one thread")
        print(f"  so {threads} one-thread processes on {threads} shards would be at best {threads * total / single:.2f}x {threads} threads")
        batched = transformer_times(reader, paths, args.layer, [1, 4, 8, 16])
        print("  transformer layers only (same CNN outputs): " + ", ".join(f"batch {b}: {s:.2f} s" for b, s in batched.items()))


if __name__ == "__main__":
    main()
