"""Shared yardsticks (docs/design.md): IEMOCAP-like lengths and a HuBERT-base checkpoint built here."""

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
from fairseq.data import Dictionary
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
from omegaconf import OmegaConf

SR = 16000
# this interpreter's own fairseq-hydra-train (a virtual environment's), else the one on PATH (fesa run's)
_BESIDE = Path(sys.executable).parent / "fairseq-hydra-train"
HYDRA_TRAIN = str(_BESIDE) if _BESIDE.exists() else (shutil.which("fairseq-hydra-train") or "fairseq-hydra-train")

# docs/fairseq-notes.md's tiny HuBERT (2 layers of 64 dims): what a script's --small mode builds instead of HuBERT base.
TINY = dict(
    encoder_layers=2,
    encoder_embed_dim=64,
    encoder_ffn_embed_dim=128,
    encoder_attention_heads=2,
    conv_feature_layers="[(64,10,5)] + [(64,3,2)] * 4 + [(64,2,2)] * 2",
    final_dim=32,
    conv_pos=16,
    conv_pos_groups=4,
)


def parse_args(parser: argparse.ArgumentParser, small: Dict[str, Any]) -> argparse.Namespace:
    """The script's arguments; with --small, `small` replaces the defaults (flags given still win)."""
    parser.add_argument("--small", action="store_true", help="a tiny model and a few items: the script runs end to end in seconds (tests)")
    args = parser.parse_args()
    if args.small:
        parser.set_defaults(**small)
        args = parser.parse_args()
    return args


def iemocap_like_seconds(n: int, seed: int = 0) -> np.ndarray:
    """Log-normal, median 3.5 s, sigma 0.7 (natural log), clipped to 0.6-34 s (mean ~4.5 s)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.exp(np.log(3.5) + 0.7 * rng.standard_normal(n)), 0.6, 34.0)


def hubert_base_checkpoint(path: Path, num_labels: int = 500, **model_overrides) -> Path:
    """A randomly initialised HuBERT base (12 x 768; **TINY: the tiny one) saved in the official release's format."""
    task_cfg = HubertPretrainingConfig(_name="hubert_pretraining", data=str(path.parent), labels=["km"], label_rate=50.0)
    model_cfg = OmegaConf.merge(OmegaConf.structured(HubertConfig(_name="hubert", label_rate=50.0)), model_overrides)
    dictionary = Dictionary()
    for i in range(num_labels):
        dictionary.add_symbol(str(i))
    model = HubertModel(model_cfg, task_cfg, [dictionary])
    cfg = {
        "task": OmegaConf.to_container(OmegaConf.structured(task_cfg), enum_to_str=True),
        "model": OmegaConf.to_container(model_cfg, resolve=True, enum_to_str=True),
    }
    torch.save(
        {
            "cfg": cfg,
            "args": None,
            "model": model.state_dict(),
            "task_state": {"dictionaries": [dictionary]},
            "optimizer_history": [{"criterion_name": "HubertCriterion", "optimizer_name": "FairseqAdam", "lr_scheduler_state": {}, "num_updates": 0}],
            "extra_state": {"train_iterator": {"epoch": 1}},
        },
        path,
    )
    return path


def random_hubert(path: Path, model: str) -> Path:
    """A random HuBERT checkpoint of `model` size: "base" (the yardstick) or "tiny" (--small)."""
    return hubert_base_checkpoint(path, **(TINY if model == "tiny" else {}))
