"""Seconds per update of HuBERT-base-size training, through fairseq-hydra-train as a user runs it.

1. The plugin's TAPT/CPT (``emotion_hubert_pretraining`` + ``emotion_hubert``, config tapt/hubert_base.yaml,
   warm-started from a checkpoint) against stock fairseq's ``hubert_pretraining`` + ``hubert`` on the same yaml,
   audio and labels: the ratio is what the plugin's pretraining costs over the stock path.
2. The classifier fine-tuning (finetune/hubert_base_attention.yaml) on the same audio.

Audio is noise of IEMOCAP-like lengths and labels are random: the figures are step times, not accuracy.
Each run skips validation and saving; the first logged interval (start-up, cudnn autotuning) is left out.

    .venv/bin/python benchmarks/train_steps.py [--updates 40] [--utterances 800] [--max-tokens N] [--cpu] [--model tiny] [--small]
"""

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf
import torch
from fairseq.models.hubert.hubert import HubertConfig
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
from common import HYDRA_TRAIN, SR, TINY, iemocap_like_seconds, parse_args, random_hubert  # noqa: E402

PLUGIN = Path(__file__).resolve().parent.parent / "fesa_fairseq"
EMOTIONS = ("neu", "hap", "ang", "sad")
STOCK = "stock hubert_pretraining + hubert"
SMALL = dict(updates=3, utterances=12, log_interval=1, model="tiny")  # --small


def frames(num_samples: int) -> int:
    return (num_samples - 400) // 320 + 1


def write_data(work: Path, n: int, k: int = 50) -> Path:
    """{train,valid}.{tsv,km,emo}, dict.km.txt and dict.emo.txt over n noise utterances."""
    rng = np.random.default_rng(0)
    data, wavs = work / "data", work / "wav"
    data.mkdir(parents=True)
    wavs.mkdir()
    for split, count in (("train", n), ("valid", max(4, n // 20))):
        tsv, km, emo = [str(wavs)], [], []
        for i, seconds in enumerate(iemocap_like_seconds(count, seed=len(split))):
            length = int(seconds * SR)
            sf.write(str(wavs / f"{split}{i}.wav"), 0.05 * rng.standard_normal(length), SR, subtype="PCM_16")
            tsv.append(f"{split}{i}.wav\t{length}")
            km.append(" ".join(map(str, rng.integers(0, k, frames(length)))))
            emo.append(EMOTIONS[i % len(EMOTIONS)])
        for ext, rows in (("tsv", tsv), ("km", km), ("emo", emo)):
            (data / f"{split}.{ext}").write_text("\n".join(rows) + "\n")
    (data / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(k)))
    (data / "dict.emo.txt").write_text("".join(f"{e} 1\n" for e in EMOTIONS))
    return data


def stock_yaml(work: Path) -> Path:
    """tapt/hubert_base.yaml as stock fairseq takes it: its task and model, only the keys their stock configs have."""
    cfg = OmegaConf.load(PLUGIN / "config" / "tapt" / "hubert_base.yaml")
    for group, stock in (("task", HubertPretrainingConfig), ("model", HubertConfig)):
        known = {f.name for f in dataclasses.fields(stock)}
        cfg[group] = {k: v for k, v in OmegaConf.to_container(cfg[group]).items() if k in known}
    cfg.task._name, cfg.model._name = "hubert_pretraining", "hubert"
    out = work / "stock" / "hubert_base.yaml"
    out.parent.mkdir()
    out.write_text("# @package _group_\n" + OmegaConf.to_yaml(cfg))
    return out.parent


def train(name: str, config_dir: Path, config: str, work: Path, overrides: List[str], cpu: bool) -> Dict[str, float]:
    run = work / name
    cmd = [
        HYDRA_TRAIN,
        "--config-dir",
        str(config_dir),
        "--config-name",
        config,
        f"common.user_dir={PLUGIN}",
        f"hydra.run.dir={run}",
        "checkpoint.no_save=true",
        "dataset.disable_validation=true",
        "common.log_interval=5",
        *overrides,
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""} if cpu else None  # common.cpu=true alone fails on a GPU machine
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"{name} failed:\n{res.stderr[-4000:]}")
    rows = [
        json.loads(line[line.index("{") :]) for line in (run / "hydra_train.log").read_text().splitlines() if "train_inner" in line and "{" in line
    ]
    if len(rows) < 2:
        raise SystemExit(f"{name}: fewer than two logged intervals; raise --updates")
    steady = rows[1:]
    out = {
        "s_per_update": statistics.median(1.0 / float(r["ups"]) for r in steady),
        "utterances_per_update": statistics.median(float(r["bsz"]) for r in steady),
    }
    if "gb_free" in steady[-1]:
        out["gb_free"] = float(steady[-1]["gb_free"])
    return out


def run_all(work: Path, args: argparse.Namespace, cpu: bool) -> Dict[str, Dict[str, float]]:
    common = [f"optimization.max_update={args.updates}", "optimization.update_freq=[1]", "lr_scheduler.warmup_updates=5"]
    common += [f"common.log_interval={args.log_interval}"]
    common += ["common.cpu=true", "common.fp16=false", "dataset.num_workers=0"] if cpu else []
    common += [f"dataset.max_tokens={args.max_tokens}", f"task.max_sample_size={args.max_tokens}"] if args.max_tokens else []
    data = write_data(work, args.utterances)
    ckpt = random_hubert(work / "hubert.pt", args.model)
    shape = [f"++model.{k}='{v}'" if isinstance(v, str) else f"++model.{k}={v}" for k, v in TINY.items()] if args.model == "tiny" else []
    pretrain = [f"task.data={data}", f"task.label_dir={data}", *common, *shape]
    return {
        STOCK: train("stock", stock_yaml(work), "hubert_base", work, pretrain, cpu),
        "fesa emotion_hubert (TAPT/CPT)": train(
            "fesa", PLUGIN / "config" / "tapt", "hubert_base", work, [*pretrain, f"model.init_checkpoint={ckpt}"], cpu
        ),
        "fesa classifier fine-tuning": train(
            "finetune",
            PLUGIN / "config" / "finetune",
            "hubert_base_attention",
            work,
            [f"task.data={data}", f"model.w2v_path={ckpt}", "optimization.max_epoch=0", *common],
            cpu,
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--updates", type=int, default=40)
    ap.add_argument("--utterances", type=int, default=800)
    ap.add_argument("--max-tokens", type=int, default=None, help="batch size in samples (default: each yaml's)")
    ap.add_argument("--log-interval", type=int, default=5, help="updates per logged interval (the figures are medians over intervals)")
    ap.add_argument("--model", choices=("base", "tiny"), default="base", help="HuBERT base, or the tiny HuBERT (same yamls otherwise)")
    ap.add_argument("--cpu", action="store_true", help="train on the CPU even where CUDA is present")
    args = parse_args(ap, SMALL)
    cpu = args.cpu or not torch.cuda.is_available()
    device = "cpu" if cpu else torch.cuda.get_device_name()
    with tempfile.TemporaryDirectory() as tmp:
        runs = run_all(Path(tmp), args, cpu)
    stock = runs[STOCK]["s_per_update"]
    print(f"device: {device}; {args.model} model; {args.updates} updates per run, median of logged intervals after the first")
    print(f"{'run':38s} {'s/update':>9s} {'utts/update':>12s} {'vs stock':>9s} {'GPU GB free':>12s}")
    for name, r in runs.items():
        ratio = f"{r['s_per_update'] / stock:.2f}x" if "hubert_pretraining" in name or "TAPT" in name else "-"
        print(f"{name:38s} {r['s_per_update']:9.3f} {r['utterances_per_update']:12.1f} {ratio:>9s} {r.get('gb_free', float('nan')):12.1f}")


if __name__ == "__main__":
    main()
