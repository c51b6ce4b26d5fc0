"""Shared yardsticks (docs/design.md): IEMOCAP-like lengths and a HuBERT-base checkpoint built here."""

from pathlib import Path

import numpy as np
import torch
from fairseq.data import Dictionary
from fairseq.models.hubert.hubert import HubertConfig, HubertModel
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig
from omegaconf import OmegaConf

SR = 16000


def iemocap_like_seconds(n: int, seed: int = 0) -> np.ndarray:
    """Log-normal, median 3.5 s, sigma 0.7 (natural log), clipped to 0.6-34 s (mean ~4.5 s)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.exp(np.log(3.5) + 0.7 * rng.standard_normal(n)), 0.6, 34.0)


def hubert_base_checkpoint(path: Path, num_labels: int = 500, **model_overrides) -> Path:
    """A randomly initialised HuBERT base (12 x 768) saved in the official release's format."""
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
