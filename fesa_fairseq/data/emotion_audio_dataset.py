"""Utterances and their emotion labels, read with soundfile, batched with as little padding as possible."""

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from fairseq.data import FairseqDataset

from fesa_fairseq.data.audio import check_audio, read_audio
from fesa_fairseq.data.files import read_manifest
from fesa_fairseq.data.waveform import prepare_waveform
from fesa_fairseq.errors import InputError

logger = logging.getLogger(__name__)


class EmotionAudioDataset(FairseqDataset):
    """A fairseq manifest plus one class index per utterance.

    Training utterances longer than ``max_sample_size`` are cropped (randomly or centrally); without it, and
    always for valid/test, every utterance is scored whole. ``balance`` resamples each epoch with inverse
    class frequency (class-balanced sampling), so batches are redrawn every epoch.
    """

    def __init__(
        self,
        manifest: str,
        targets: Sequence[int],
        sample_rate: int = 16000,
        max_sample_size: Optional[int] = None,
        random_crop: bool = True,
        normalize: bool = False,
        shuffle: bool = True,
        balance: bool = False,
        seed: int = 1,
    ) -> None:
        super().__init__()
        self.manifest = manifest
        self.root, rows = read_manifest(manifest)
        if len(rows) != len(targets):
            raise InputError(f"{manifest} lists {len(rows)} utterances but {len(targets)} labels were given")
        self.paths = [str(Path(self.root, rel)) for rel, _ in rows]
        self.sizes = np.array([n for _, n in rows], dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self.sample_rate = sample_rate
        self.max_sample_size = max_sample_size
        self.random_crop = random_crop
        self.normalize = normalize
        self.shuffle = shuffle
        self.balance = balance
        self.seed = seed
        self.epoch = 1
        self._check_audio_headers()

    def _check_audio_headers(self) -> None:
        for line, (path, n) in enumerate(zip(self.paths, self.sizes), start=2):
            check_audio(path, self.sample_rate, n, where=f"{self.manifest}:{line}: ")

    def __len__(self) -> int:
        return len(self.sizes)

    def _crop(self, wav: np.ndarray, index: int) -> np.ndarray:
        excess = len(wav) - self.max_sample_size if self.max_sample_size else 0
        if excess <= 0:
            return wav
        if self.random_crop:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            start = int(rng.integers(0, excess + 1))
        else:
            start = excess // 2
        return wav[start : start + self.max_sample_size]

    def __getitem__(self, index: int) -> Dict[str, object]:
        wav = read_audio(self.paths[index], self.sample_rate)
        wav = self._crop(wav, index)
        source = prepare_waveform(torch.from_numpy(wav), self.normalize)
        return {"id": index, "source": source, "target": int(self.targets[index])}

    def num_tokens(self, index: int) -> int:
        return self.size(index)

    def size(self, index: int) -> int:
        n = int(self.sizes[index])
        return min(n, self.max_sample_size) if self.max_sample_size else n

    @property
    def cropped_sizes(self) -> np.ndarray:
        return np.minimum(self.sizes, self.max_sample_size) if self.max_sample_size else self.sizes

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.cropped_sizes[indices]

    def collater(self, samples: List[Dict[str, object]]) -> Dict[str, object]:
        if not samples:
            return {}
        lengths = [len(s["source"]) for s in samples]
        source = torch.zeros(len(samples), max(lengths))
        padding_mask = torch.ones(len(samples), max(lengths), dtype=torch.bool)
        for i, (s, n) in enumerate(zip(samples, lengths)):
            source[i, :n] = s["source"]
            padding_mask[i, :n] = False
        return {
            "id": torch.LongTensor([s["id"] for s in samples]),
            "net_input": {"source": source, "padding_mask": padding_mask},
            "target": torch.LongTensor([s["target"] for s in samples]),
            "nsentences": len(samples),
            "ntokens": sum(lengths),
        }

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def ordered_indices(self) -> np.ndarray:
        """Shuffled (or class-balanced), then sorted by length so that batches hold utterances of similar size."""
        rng = np.random.default_rng([self.seed, self.epoch])
        return length_sorted_order(self.cropped_sizes, self.targets, rng, self.shuffle, self.balance)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return not self.balance  # crops are redrawn in __getitem__; their sizes never change

    @property
    def supports_prefetch(self) -> bool:
        return False


def length_sorted_order(sizes: np.ndarray, targets: np.ndarray, rng: np.random.Generator, shuffle: bool = True, balance: bool = False) -> np.ndarray:
    """Indices drawn (shuffled, or with inverse class frequency when balancing), longest first.

    fairseq's ``batch_by_size`` then cuts this order into batches, so each batch holds utterances of similar
    length, and the epoch iterator shuffles the batches.
    """
    if balance:
        p = 1.0 / np.bincount(targets)[targets]
        order = rng.choice(len(sizes), size=len(sizes), replace=True, p=p / p.sum())
    elif shuffle:
        order = rng.permutation(len(sizes))
    else:
        order = np.arange(len(sizes))
    return order[np.argsort(sizes[order], kind="stable")[::-1]]
