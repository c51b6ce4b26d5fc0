"""Frame-feature readers with fairseq ``simple_kmeans``'s interface (``get_feats(path, ref_len)``).

Unlike fairseq's own readers they run on CPU or CUDA, in fp32 or under bf16/fp16 autocast (the features come
out in fp32 either way), read audio with soundfile (torchaudio does not load beside torch 2.13), accept every
HuBERT-family checkpoint this project meets, and refuse audio whose sample count differs from its manifest
instead of warning.
"""

import logging
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from fesa.checkpoints import FrameGeometry, load_model
from fesa.devices import autocast, precision_name, resolve_precision
from fesa.options import PseudoLabelOptions, check_layer
from fesa_fairseq.checkpoints import inspect_checkpoint, require_hubert_family
from fesa_fairseq.data.audio import read_audio
from fesa_fairseq.data.waveform import prepare_waveform
from fesa_fairseq.models.batching import extract_features_batched, length_batches

logger = logging.getLogger(__name__)


class HubertFeatureReader:
    """Layer-`layer` features of a HuBERT checkpoint: pretraining (stock or ours), official release, or classifier.

    ``precision``: a name as fesa pseudo-labels' --precision takes (its default too), resolved on ``device``; or a
    dtype already resolved (None: fp32)."""

    def __init__(
        self,
        checkpoint: str,
        layer: int,
        device: torch.device,
        max_chunk: int = PseudoLabelOptions.max_chunk,
        data_dir: Optional[str] = None,
        precision: Union[str, torch.dtype, None] = PseudoLabelOptions.precision,
    ) -> None:
        precision = resolve_precision(precision, device) if isinstance(precision, str) else precision
        info = require_hubert_family(inspect_checkpoint(checkpoint))
        # A classifier's task reads dict.emo.txt at set-up: point it at the folder being labelled, not at the
        # fold it was trained on (which may live elsewhere). Pretraining tasks read nothing at set-up.
        overrides = {"data": str(data_dir)} if info.is_classifier and data_dir else None
        model, _, task = load_model(checkpoint, arg_overrides=overrides)
        self.model = model.eval().to(device)
        self.hubert = self.model.encoder.w2v_model if info.is_classifier else self.model
        self.num_layers = len(self.hubert.encoder.layers)
        self.checkpoint = checkpoint
        self.layer = self._check_layer(layer)
        self.device = device
        self.precision = precision
        self.max_chunk = max_chunk
        self.sample_rate = task.cfg.sample_rate
        self.normalize = task.cfg.normalize
        self.geometry = FrameGeometry.of(self.hubert, self.sample_rate)
        self.label_rate = self.geometry.frame_rate
        logger.info(
            "features of layer %d/%d of %s (%s) on %s in %s", layer, self.num_layers, checkpoint, info.model, device, precision_name(precision)
        )

    def _check_layer(self, layer: int) -> int:
        check_layer(layer, "--layer", self.num_layers, self.checkpoint)
        return layer

    def frames(self, num_samples: int) -> int:
        return self.geometry.frames(num_samples)

    def _source(self, path: str, ref_len: int = None) -> torch.Tensor:
        """The waveform as the model was trained to see it: 1 x samples, layer-normalised when the task says so."""
        x = torch.from_numpy(read_audio(path, self.sample_rate, ref_len)).to(self.device)
        return prepare_waveform(x, self.normalize).view(1, -1)

    @torch.inference_mode()
    def get_feats(self, path: str, ref_len: int = None) -> torch.Tensor:
        x = self._source(path, ref_len)
        chunks = []
        for start in range(0, x.size(1), self.max_chunk):
            piece = x[:, start : start + self.max_chunk]
            with autocast(self.device, self.precision):
                feat, _ = self.model.extract_features(source=piece, padding_mask=None, mask=False, output_layer=self.layer)
            chunks.append(feat)
        return torch.cat(chunks, 1).squeeze(0).float().cpu()

    @torch.inference_mode()
    def get_feats_batched(self, items: Sequence[Tuple[str, int]]) -> List[torch.Tensor]:
        """``get_feats`` of several (path, samples) in one padded pass (``models.batching``: the group-normalised
        front end never sees padding), equal to each alone; items longer than ``max_chunk`` go alone, chunked."""
        whole = [i for i, (_, n) in enumerate(items) if n <= self.max_chunk]
        out: List[Optional[torch.Tensor]] = [None] * len(items)
        if whole:
            waves = [self._source(*items[i]).view(-1) for i in whole]
            with autocast(self.device, self.precision):
                feats, padding = extract_features_batched(self.hubert, waves, output_layer=self.layer)
            counts = (~padding).sum(-1).tolist()
            for j, i in enumerate(whole):
                out[i] = feats[j, : counts[j]].float().cpu()
        return [f if f is not None else self.get_feats(*items[i]) for i, f in enumerate(out)]

    @torch.inference_mode()
    def get_layer_feats(self, path: str, layers: List[int], ref_len: int = None) -> Dict[int, torch.Tensor]:
        """Several layers from one forward pass (hooks), each equal to extract_features(output_layer=layer)."""
        for layer in layers:
            self._check_layer(layer)
        captured: Dict[int, torch.Tensor] = {}
        hooks = [
            self.hubert.encoder.layers[layer - 1].register_forward_hook(
                lambda module, args, output, layer=layer: captured.__setitem__(layer, output[0])
            )
            for layer in layers
        ]
        try:
            with autocast(self.device, self.precision):
                final, _ = self.model.extract_features(source=self._source(path, ref_len), padding_mask=None, mask=False, output_layer=max(layers))
        finally:
            for hook in hooks:
                hook.remove()
        # Layers see time x batch x channels, padded to an even length (required_seq_len_multiple).
        return {layer: captured[layer][: final.size(1), 0].float().cpu() for layer in layers}


class BatchedFeatures:
    """A reader for fairseq's ``dump_feature`` whose ``get_feats`` answers, in order, from batches of the next
    utterances of ``items`` (the shard's (path, samples), as that loop will ask for them): up to ``budget`` padded
    samples per pass, ``LOOKAHEAD`` passes' worth sorted by length at a time."""

    LOOKAHEAD = 8

    def __init__(self, reader: HubertFeatureReader, items: Sequence[Tuple[str, int]], budget: int) -> None:
        self.reader, self.items, self.budget = reader, list(items), budget
        self.next = 0
        self.ready: Iterator[torch.Tensor] = iter(())

    def __getattr__(self, name: str):
        return getattr(self.reader, name)

    def get_feats(self, path: str, ref_len: int = None) -> torch.Tensor:
        feat = next(self.ready, None)
        if feat is None:
            self.ready = iter(self._next_chunk())
            feat = next(self.ready)
        return feat

    def _next_chunk(self) -> List[torch.Tensor]:
        end, total = self.next, 0
        while end < len(self.items) and (end == self.next or total < self.budget * self.LOOKAHEAD):
            total += self.items[end][1]
            end += 1
        chunk, self.next = self.items[self.next : end], end
        feats: List[Optional[torch.Tensor]] = [None] * len(chunk)
        for batch in length_batches([n for _, n in chunk], self.budget):
            for i, f in zip(batch, self.reader.get_feats_batched([chunk[i] for i in batch])):
                feats[i] = f
        return feats


class MfccFeatureReader:
    """13 MFCCs + deltas + delta-deltas at 100 Hz, as fairseq's ``dump_mfcc_feature.py`` computes them.

    fairseq uses ``torchaudio.compliance.kaldi.mfcc`` (no dither, no energy term) and
    ``torchaudio.functional.compute_deltas`` (5-frame regression, edges replicated); kaldi-native-fbank gives
    the same Kaldi MFCC without torchaudio, and the deltas are Kaldi's regression formula.
    """

    def __init__(self, sample_rate: int = 16000) -> None:
        import kaldi_native_fbank as knf

        self.knf = knf
        self.sample_rate = sample_rate
        self.opts = knf.MfccOptions()
        self.opts.frame_opts.samp_freq = sample_rate
        self.opts.frame_opts.dither = 0.0
        self.opts.use_energy = False
        self.opts.energy_floor = 1.0
        self.shift = int(sample_rate * self.opts.frame_opts.frame_shift_ms / 1000)
        self.window = int(sample_rate * self.opts.frame_opts.frame_length_ms / 1000)
        self.label_rate = sample_rate / self.shift

    def _check_layer(self, layer: int) -> int:
        check_layer(layer, "--layer", self.num_layers, self.checkpoint)
        return layer

    def frames(self, num_samples: int) -> int:
        return 1 + (num_samples - self.window) // self.shift if num_samples >= self.window else 0

    def mfcc(self, wav: np.ndarray) -> np.ndarray:
        computer = self.knf.OnlineMfcc(self.opts)
        computer.accept_waveform(self.sample_rate, wav.tolist())
        computer.input_finished()
        return np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)], dtype=np.float32)

    def get_feats(self, path: str, ref_len: int = None) -> torch.Tensor:
        mfcc = self.mfcc(read_audio(path, self.sample_rate, ref_len))
        deltas = compute_deltas(mfcc)
        return torch.from_numpy(np.concatenate([mfcc, deltas, compute_deltas(deltas)], axis=1))


def compute_deltas(x: np.ndarray, n: int = 2) -> np.ndarray:
    """Kaldi's delta regression over time (rows): sum_k k (x[t+k] - x[t-k]) / (2 sum_k k^2), edges replicated."""
    padded = np.pad(x, ((n, n), (0, 0)), mode="edge")
    t = len(x)
    num = sum(k * (padded[n + k : n + k + t] - padded[n - k : n - k + t]) for k in range(1, n + 1))
    return (num / (2 * sum(k * k for k in range(1, n + 1)))).astype(np.float32)
