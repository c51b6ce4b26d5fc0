"""Utterance-level speech emotion classification on a fold folder.

A fold folder holds ``{split}.tsv`` (fairseq audio manifest), ``{split}.emo`` (one label per line, aligned
with the manifest) and ``dict.emo.txt`` (``label count`` per line, counted on the training split).
"""

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

import torch
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from fesa_fairseq.data.emotion_audio_dataset import EmotionAudioDataset
from fesa_fairseq.data.files import read_lines
from fesa_fairseq.data.labels import check_aligned, read_label_dictionary, read_targets

logger = logging.getLogger(__name__)

CLASS_BALANCE_CHOICES = ChoiceEnum(["none", "weights", "sampling"])


@dataclass
class SpeechEmotionClassificationConfig(FairseqDataclass):
    data: str = field(default=MISSING, metadata={"help": "fold folder with {split}.tsv, {split}.emo and dict.emo.txt"})
    labels: str = field(default="emo", metadata={"help": "extension of the label files: {split}.<labels> and dict.<labels>.txt"})
    sample_rate: int = field(default=16000, metadata={"help": "audio sample rate; every wav must have it"})
    normalize: bool = field(
        default=False,
        metadata={"help": "layer-normalise each waveform; must match the checkpoint (False for HuBERT base, True for large)"},
    )
    max_sample_size: Optional[int] = field(
        default=None,
        metadata={"help": "crop training utterances to at most this many samples (96000 = 6 s); valid and test are never cropped"},
    )
    random_crop: bool = field(default=True, metadata={"help": "crop training utterances at a random offset (else centrally)"})
    class_balance: CLASS_BALANCE_CHOICES = field(
        default="none",
        metadata={
            "help": "class imbalance: 'weights' weighs the loss by inverse class frequency, 'sampling' draws training "
            "utterances with inverse class frequency every epoch"
        },
    )
    train_subset: str = II("dataset.train_subset")
    seed: int = II("common.seed")


@register_task("speech_emotion_classification", dataclass=SpeechEmotionClassificationConfig)
class SpeechEmotionClassificationTask(FairseqTask):
    cfg: SpeechEmotionClassificationConfig

    def __init__(self, cfg: SpeechEmotionClassificationConfig, from_checkpoint: bool = False, **kwargs) -> None:
        super().__init__(cfg, **kwargs)
        self.dict_path = Path(cfg.data) / f"dict.{cfg.labels}.txt"
        # The classes live in the task state, as HubertPretrainingTask's dictionaries do: saved in every checkpoint,
        # so that a fine-tuned classifier loads without its fold folder and scoring can refuse other classes.
        self.state.add_factory("labels", lambda: self._read_classes()[0])
        self.state.add_factory("label_counts", lambda: self._read_classes()[1])
        if not from_checkpoint:  # training: a bad dict.emo.txt is an error now, not at its first use
            self.state.merge_state_dict(dict(zip(("labels", "label_counts"), self._read_classes())))

    def _read_classes(self) -> Tuple[List[str], List[int]]:
        labels, counts = read_label_dictionary(self.dict_path)
        logger.info("classes (%s): %s", self.dict_path, ", ".join(f"{label} {c}" for label, c in zip(labels, counts)))
        return list(labels), list(counts)

    @property
    def labels(self) -> List[str]:
        return self.state.labels

    @property
    def label_counts(self) -> List[int]:
        return self.state.label_counts

    # fairseq 0.12.2's HubertEncoder adds a projection to len(target_dictionary) whenever there is one.
    @property
    def source_dictionary(self) -> None:
        return None

    @property
    def target_dictionary(self) -> None:
        return None

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        manifest = Path(self.cfg.data) / f"{split}.tsv"
        label_file = Path(self.cfg.data) / f"{split}.{self.cfg.labels}"
        targets = read_targets(label_file, self.labels, self.dict_path)
        check_aligned(manifest, label_file, max(len(read_lines(manifest)) - 1, 0), len(targets))
        train = split == self.cfg.train_subset
        self.datasets[split] = EmotionAudioDataset(
            str(manifest),
            targets,
            sample_rate=self.cfg.sample_rate,
            max_sample_size=self.cfg.max_sample_size if train else None,
            random_crop=self.cfg.random_crop,
            normalize=self.cfg.normalize,
            shuffle=train,
            balance=train and self.cfg.class_balance == "sampling",
            seed=self.cfg.seed,
        )
        logger.info("%s: %d utterances from %s", split, len(targets), manifest)

    @property
    def class_weights(self) -> Optional[torch.Tensor]:
        """Inverse training frequency, scaled to average 1 over classes, when class_balance='weights'."""
        if self.cfg.class_balance != "weights":
            return None
        counts = torch.tensor(self.label_counts, dtype=torch.float).clamp(min=1.0)
        weights = counts.sum() / counts
        return weights * len(weights) / weights.sum()

    def max_positions(self) -> int:
        return sys.maxsize
