"""A training stage on N GPUs trains with the batch its yaml was written for.

A stage's yaml states its reference batch for the world size it names (``distributed_world_size``, 1 in the
plugin's yamls): ``max_tokens`` samples per GPU batch, ``update_freq`` batches a step. TAPT and CPT: the
authors' 4 GPUs x 87.5 s, written as one GPU x 4 batches of 1,400,000 samples; fine-tuning: one batch of 288 s.
On N GPUs each step still holds that much audio: update_freq = ceil(R / N), R = world size x update_freq of the
yaml, and when N x update_freq exceeds R (N does not divide R, or N > R) each GPU's batch shrinks to
ceil(reference / (N x update_freq)) samples, never grows past the yaml's (that is what fits a GPU's memory).
max_tokens bounds a batch; batches hold whole utterances, so the audio of a step is at most this, as on one GPU.
"""

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

from omegaconf import OmegaConf

logger = logging.getLogger(__name__)

WORLD, FREQ, TOKENS = "distributed_training.distributed_world_size", "optimization.update_freq", "dataset.max_tokens"
SAMPLE_RATE = 16000


@dataclass
class Batch:
    world_size: int
    update_freq: int
    max_tokens: int

    @property
    def samples(self) -> int:
        """Audio of one optimizer step, at most (samples over all GPUs and accumulated batches)."""
        return self.world_size * self.update_freq * self.max_tokens

    def describe(self) -> str:
        return f"{self.world_size} GPU x {self.update_freq} x {self.max_tokens / SAMPLE_RATE:g} s = {self.samples / SAMPLE_RATE:g} s a step"


def yaml_batch(config: Path) -> Batch:
    """The reference batch a stage's yaml states."""
    cfg = OmegaConf.load(config)
    freq = OmegaConf.select(cfg, FREQ, default=1)  # fairseq's default; a yaml gives a list, [4]
    return Batch(int(OmegaConf.select(cfg, WORLD, default=1)), int(freq[0] if OmegaConf.is_list(freq) else freq), int(OmegaConf.select(cfg, TOKENS)))


def batch_on(reference: Batch, gpus: int) -> Batch:
    """The same audio per step on ``gpus`` GPUs: accumulate where the GPUs are fewer, split each GPU's batch where
    the accumulation steps do not divide among them."""
    steps = reference.world_size * reference.update_freq
    freq = math.ceil(steps / gpus)
    return Batch(gpus, freq, min(reference.max_tokens, math.ceil(reference.samples / (gpus * freq))))


def distributed_overrides(config: Path, gpus: int, user: Sequence[str]) -> List[str]:
    """The keys that run ``config`` on ``gpus`` GPUs with its reference batch; none on one GPU or none (the yaml's
    own) or where the user's overrides set the world size, and none the user's overrides already give (theirs win)."""
    if gpus <= 1 or not config.is_file() or OmegaConf.select(OmegaConf.load(config), TOKENS) is None:
        return []
    reference = yaml_batch(config)
    if reference.world_size == gpus:
        return []
    batch = batch_on(reference, gpus)
    if batch.samples != reference.samples:
        logger.info("%s on %d GPUs: %s (the yaml's: %s)", config.name, gpus, batch.describe(), reference.describe())
    given = {item.lstrip("+").split("=", 1)[0] for item in user}
    if WORLD in given:  # the user distributes the stage themselves
        return []
    keys = {WORLD: str(gpus), FREQ: f"[{batch.update_freq}]", TOKENS: str(batch.max_tokens)}
    return [f"{key}={value}" for key, value in keys.items() if key not in given]
