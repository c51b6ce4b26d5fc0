"""HuBERT masked prediction of frame labels: task-adaptive pretraining (TAPT) and continued pretraining (CPT).

fairseq's ``HubertPretrainingTask`` with two differences: a label line whose length does not fit its
utterance is an error naming the utterance (fairseq only logs a warning and trains on misaligned targets),
and a model with ``init_checkpoint`` is warm-started when built for training (not when a finished checkpoint
is loaded, whose own weights win).
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from fairseq.tasks import register_task
from fairseq.tasks.hubert_pretraining import HubertPretrainingConfig, HubertPretrainingTask

from fesa_fairseq.data.files import read_lines, read_manifest
from fesa_fairseq.errors import InputError

logger = logging.getLogger(__name__)


@dataclass
class EmotionHubertPretrainingConfig(HubertPretrainingConfig):
    label_length_tolerance: float = field(
        default=0.05,
        metadata={
            "help": "seconds a label line may differ from its utterance's duration before it is refused as misaligned; "
            "front ends fall up to 25 ms short (HuBERT's conv stack at 50 Hz, Kaldi MFCC at 100 Hz)"
        },
    )


@register_task("emotion_hubert_pretraining", dataclass=EmotionHubertPretrainingConfig)
class EmotionHubertPretrainingTask(HubertPretrainingTask):
    cfg: EmotionHubertPretrainingConfig

    def load_dataset(self, split: str, **kwargs) -> None:
        for label in self.cfg.labels:
            self.check_label_lengths(Path(self.cfg.data) / f"{split}.tsv", Path(self.get_label_dir()) / f"{split}.{label}")
        super().load_dataset(split, **kwargs)

    def check_label_lengths(self, manifest: Path, label_path: Path) -> None:
        _, rows = read_manifest(manifest)
        lines = read_lines(label_path)
        if len(lines) != len(rows):
            raise InputError(f"{label_path} has {len(lines)} lines but {manifest} lists {len(rows)} utterances")
        for i, ((rel, n), line) in enumerate(zip(rows, lines), start=1):
            expected = n / self.cfg.sample_rate * self.cfg.label_rate
            got = len(line.split())
            if abs(got - expected) > self.cfg.label_length_tolerance * self.cfg.label_rate:
                raise InputError(
                    f"{label_path}:{i}: {got} labels for {rel} ({n} samples = {expected:.1f} frames at "
                    f"{self.cfg.label_rate:g} Hz); the labels do not belong to this manifest or this label_rate: "
                    "make them again with fesa pseudo-labels"
                )

    def build_model(self, cfg, from_checkpoint: bool = False):
        model = super().build_model(cfg, from_checkpoint)
        init = getattr(cfg, "init_checkpoint", None)
        if init and not from_checkpoint:
            model.load_init_checkpoint(init, self.dictionaries, getattr(cfg, "reset_label_embeddings", "auto"))
        return model
