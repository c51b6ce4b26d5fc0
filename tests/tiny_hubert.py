"""Generated audio and a tiny HuBERT trained by *stock* fairseq (its own task, model and yaml), for tests."""

import argparse
import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Sequence

import fairseq
import numpy as np
import soundfile as sf
import torch

FAIRSEQ_HUBERT_CONFIGS = Path(fairseq.__file__).parent / "examples" / "hubert" / "config" / "pretrain"
FAIRSEQ_HYDRA_TRAIN = str(Path(sys.executable).parent / "fairseq-hydra-train")
# docs/fairseq-notes.md's tiny HuBERT: 2 layers of 64 dims, a 64-channel conv front end, 50 frames per second.
TINY_MODEL = [
    "+model.encoder_layers=2",
    "+model.encoder_embed_dim=64",
    "+model.encoder_ffn_embed_dim=128",
    "+model.encoder_attention_heads=2",
    "model.final_dim=32",
    "model.conv_feature_layers='[(64,10,5)] + [(64,3,2)] * 4 + [(64,2,2)] * 2'",
    "+model.conv_pos=16",
    "+model.conv_pos_groups=4",
]
CPU_RUN = [
    "common.cpu=true",
    "common.fp16=false",
    "distributed_training.distributed_world_size=1",
    "dataset.required_batch_size_multiple=1",
    "dataset.num_workers=0",
    "common.log_interval=1",
]

# A fesa run experiment of the tiny models on the demo folds: one fold, 3 updates a stage (add "corpus").
TINY_RUN = {
    "source_checkpoint": "bootstrap",
    "folds": [1],
    "tapt_labels": {"clusters": 8},
    "emotion_labels": {"layer": 1, "clusters": 6},
    "cpt_init": "tapt",
    "configs": {"tapt": "tiny", "finetune": "tiny", "cpt": "tiny"},
    "overrides": {key: ["optimization.max_update=3"] for key in ("tapt", "tapt_finetune", "cpt", "finetune")},
    "device": "cpu",
    "alignment": False,  # tests of fesa alignment's stages ask for them
}


def frames(num_samples: int) -> int:
    """Frames of the conv front end above (receptive field 400 samples, hop 320)."""
    return (num_samples - 400) // 320 + 1


def write_audio_split(data_dir: Path, wav_dir: Path, split: str, n: int, seed: int, seconds=(0.6, 1.2)) -> List[int]:
    rng = np.random.default_rng(seed)
    wav_dir.mkdir(parents=True, exist_ok=True)
    lines, lengths = [str(wav_dir.resolve())], []
    for i in range(n):
        length = int(16000 * rng.uniform(*seconds))
        sf.write(str(wav_dir / f"{split}{i}.wav"), 0.1 * rng.standard_normal(length), 16000, subtype="PCM_16")
        lines.append(f"{split}{i}.wav\t{length}")
        lengths.append(length)
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return lengths


def write_random_km(data_dir: Path, split: str, lengths: Sequence[int], k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = [" ".join(map(str, rng.integers(0, k, frames(n)))) for n in lengths]
    (data_dir / f"{split}.km").write_text("\n".join(rows) + "\n")
    (data_dir / "dict.km.txt").write_text("".join(f"{i} 1\n" for i in range(k)))


def train_stock_hubert(work: Path, k: int = 10, updates: int = 3) -> Path:
    """fairseq-hydra-train with fairseq's own hubert_base_librispeech.yaml, shrunk; returns checkpoint_last.pt."""
    data = work / "data"
    for split, n, seed in (("train", 8, 0), ("valid", 3, 1)):
        lengths = write_audio_split(data, work / "wav", split, n, seed)
        write_random_km(data, split, lengths, k, seed)
    save_dir = work / "ckpt"
    cmd = [
        FAIRSEQ_HYDRA_TRAIN,
        "--config-dir",
        str(FAIRSEQ_HUBERT_CONFIGS),
        "--config-name",
        "hubert_base_librispeech",
        f"task.data={data}",
        f"task.label_dir={data}",
        "task.labels=[km]",
        "model.label_rate=50",
        f"hydra.run.dir={work / 'hydra'}",
        f"checkpoint.save_dir={save_dir}",
        f"optimization.max_update={updates}",
        "task.min_sample_size=8000",
        *CPU_RUN,
        *TINY_MODEL,
    ]
    # CPU_RUN on a GPU machine: fairseq would put the gradient norm on CUDA anyway unless the GPU is hidden
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=work, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    return save_dir / "checkpoint_last.pt"


def to_release_format(stock_ckpt: Path, out: Path, legacy_args: bool) -> Path:
    """Rewrite a checkpoint the way official releases look.

    HuBERT releases carry ``cfg`` as a dict plus ``task_state`` dictionaries; older fairseq releases carry an
    ``argparse.Namespace`` ``args`` instead of ``cfg``, and numpy scalars and arrays in ``extra_state``.
    """
    state = torch.load(stock_ckpt, weights_only=False)
    state["extra_state"] = {"best": np.float64(5.5), "val_loss": np.float64(5.5), "metrics": {"gnorm": np.array([1.0, 2.0])}}
    state["last_optimizer_state"] = None
    if legacy_args:
        cfg, ns = state["cfg"], argparse.Namespace()
        for group in ("common", "checkpoint", "distributed_training", "dataset", "optimization", "task", "model", "criterion"):
            for key, value in (cfg[group] or {}).items():
                if key != "_name":
                    setattr(ns, key, value)
        ns.task, ns.arch, ns.criterion = "hubert_pretraining", "hubert", "hubert"
        ns.optimizer, ns.lr_scheduler = "adam", "polynomial_decay"
        state["args"], state["cfg"] = ns, None
    torch.save(state, out)
    return out


def run_fesa(*args, cwd=None, env=None, fresh: bool = False) -> subprocess.CompletedProcess:
    """`fesa ARGS`: in this process (fairseq imported once for the whole session), or with `fresh` in a new one
    (for what a process does only once: signals, imports, exit codes of the interpreter)."""
    argv = [str(a) for a in args]
    if fresh:
        cmd = [sys.executable, "-m", "fesa.cli", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})})
    from fesa.cli import main

    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level, saved_env, here = root.handlers[:], root.level, dict(os.environ), os.getcwd()
    try:
        os.environ.update(env or {})
        os.chdir(cwd or here)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:], root.level = handlers, level
    return subprocess.CompletedProcess(["fesa", *argv], code, out.getvalue(), err.getvalue())


PLUGIN = Path(__file__).resolve().parent.parent / "fesa_fairseq"


def hydra_train_command(stage: str, config: str, run_dir: Path, *overrides: str) -> List[str]:
    """fairseq-hydra-train with one of the plugin's yaml files, as a user types it."""
    return [
        FAIRSEQ_HYDRA_TRAIN,
        "--config-dir",
        str(PLUGIN / "config" / stage),
        "--config-name",
        config,
        f"common.user_dir={PLUGIN}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]


def hydra_train(stage: str, config: str, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(hydra_train_command(stage, config, run_dir, *overrides), capture_output=True, text=True)


def finetune(fold: Path, w2v_path: Path, run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return hydra_train("finetune", "tiny", run_dir, f"task.data={fold}", f"model.w2v_path={w2v_path}", *overrides)
