"""Utterance and frame-level emotion of any recording, from a fine-tuned classifier checkpoint alone.

How a frame gets an emotion: without a projection layer the classifier's head is affine and the pooling
weights sum to 1, so its utterance logits are exactly the pooling-weighted sum of the head applied to each frame
(``HubertEmotionClassifier.frame_outputs``). The softmax of those per-frame logits is the frame's class
posterior. With a projection layer (tanh) the head is applied to each frame all the same, but the weighted sum
of frame logits is then only close to the utterance logits.

Long recordings go through the encoder in overlapping windows (``window``/``hop`` seconds); each frame is taken
from the window in which it is most central, and memory stays that of one window. The file's utterance result
is the model's own pooling over every frame of the file: attention weights renormalised over all frames
(a running log-sum-exp, so only one pooled vector is kept), then the head.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from fesa.options import FrameOptions
from fesa_fairseq.checkpoints import HUBERT_GEOMETRY, FrameGeometry, load_model, require_classifier
from fesa_fairseq.data.audio import AudioSource
from fesa_fairseq.data.segments import Segment
from fesa_fairseq.data.waveform import prepare_waveform
from fesa_fairseq.devices import autocast, resolve_device, resolve_precision
from fesa_fairseq.errors import FesaError
from fesa_fairseq.inference.segments import frames_to_segments

logger = logging.getLogger(__name__)


@dataclass
class Prediction:
    """What the model says about one recording."""

    duration: float  # seconds
    labels: List[str]  # the classes, in the model's order
    label: str  # the utterance's emotion
    probabilities: np.ndarray  # classes
    frame_posteriors: np.ndarray  # frames × classes, 50 frames per second
    pooling_weights: np.ndarray  # frames, summing to 1 over the recording
    segments: List[Segment] = field(default_factory=list)
    frame_rate: float = HUBERT_GEOMETRY.frame_rate

    def diarization(self, wav: str = "") -> Dict[str, object]:
        """This recording's entry of a segments file (the ZED recipe's layout, which fesa eder reads)."""
        return {"wav": wav, "duration": round(self.duration, 3), "emotion": [{"emo": s.label, "start": s.start, "end": s.end} for s in self.segments]}


@dataclass
class Windows:
    """Encoder windows over a recording: start samples (multiples of the hop) and the frames each one keeps."""

    starts: List[int]
    length: int
    keep: List[Tuple[int, int]]  # per window: its first and end frame, in the recording's frame index


def plan_windows(samples: int, window: Optional[float], hop: float, geometry: FrameGeometry = HUBERT_GEOMETRY) -> Windows:
    """Windows of ``window`` seconds every ``hop`` seconds; the last one ends at the recording's end. Between
    neighbours the boundary is the middle of their overlap, so each frame comes from the window where it is most
    central. ``window`` None: one window, the whole recording."""
    g = geometry
    if window is None:
        return Windows([0], samples, [(0, g.frames(samples))])
    length = max(g.receptive_field, int(round(window * g.frame_rate)) * g.hop)
    step = int(round(hop * g.frame_rate)) * g.hop
    if not 0 < step <= length - g.receptive_field:
        raise FesaError(f"--hop {hop} s must be positive and leave the windows ({window} s) overlapping")
    if samples <= length:
        return Windows([0], samples, [(0, g.frames(samples))])
    starts = list(range(0, samples - length, step)) + [(samples - length) // g.hop * g.hop]
    first = [s // g.hop for s in starts]
    ends = [f + g.frames(min(length, samples - s)) for f, s in zip(first, starts)]
    cuts = [0] + [(first[i + 1] + ends[i]) // 2 for i in range(len(starts) - 1)] + [g.frames(samples)]
    return Windows(starts, length, list(zip(cuts[:-1], cuts[1:])))


class EmotionRecognizer:
    """``EmotionRecognizer.from_checkpoint(path).predict("speech.wav")``: the checkpoint alone is enough.

    The one scorer: ``fesa predict``, ``fesa evaluate`` and the ONNX check all go through it, so a recording is
    prepared, framed and pooled the same way everywhere. ``window`` None scores every recording in one pass."""

    def __init__(
        self,
        model,
        labels: Sequence[str],
        device: torch.device,
        normalize: bool = False,
        window: Optional[float] = FrameOptions.window,
        hop: float = FrameOptions.hop,
        median: float = FrameOptions.median,
        min_segment: float = FrameOptions.min_segment,
        precision: Optional[torch.dtype] = None,
        sample_rate: int = HUBERT_GEOMETRY.sample_rate,
    ) -> None:
        self.geometry = FrameGeometry.of(model.encoder.w2v_model, sample_rate)
        FrameOptions(window, hop, median, min_segment).check(self.geometry.receptive_field / sample_rate)
        self.model, self.labels, self.device, self.normalize = model, list(labels), device, normalize
        self.precision = precision
        self.window, self.hop, self.median, self.min_segment = window, hop, median, min_segment

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], device: str = "auto", precision: str = "fp32", **options) -> "EmotionRecognizer":
        """``precision``: fp32, bf16, fp16 or auto (:func:`fesa_fairseq.devices.resolve_precision`)."""
        require_classifier(str(path))
        dev = resolve_device(device)
        dtype = resolve_precision(precision, dev)
        model, _, task = load_model(str(path))
        return cls.from_task(model, task, dev, dtype, **options)

    @classmethod
    def from_task(cls, model, task, device: torch.device, precision: Optional[torch.dtype] = None, **options) -> "EmotionRecognizer":
        """Around a classifier already loaded with its speech_emotion_classification task (classes, input rate and
        normalisation come from the task)."""
        return cls(
            model.eval().to(device), task.labels, device, bool(task.cfg.normalize), precision=precision, sample_rate=task.cfg.sample_rate, **options
        )

    @property
    def sample_rate(self) -> int:
        return self.geometry.sample_rate

    def source(self, path: Union[str, Path]) -> AudioSource:
        """A recording as this model reads it (mono, at its rate)."""
        return AudioSource(path, rate=self.sample_rate)

    def predict(self, audio: Union[str, Path, np.ndarray], sample_rate: Optional[int] = None) -> Prediction:
        """A path (wav, flac, ogg) or a waveform (samples, or samples × channels) at ``sample_rate``."""
        if isinstance(audio, np.ndarray):
            return self.predict_source(AudioSource(array=audio, sample_rate=sample_rate, rate=self.sample_rate))
        return self.predict_source(self.source(audio))

    @torch.no_grad()
    def predict_source(self, source: AudioSource) -> Prediction:
        g = self.geometry
        if source.samples < g.receptive_field:
            where = source.path if source.path is not None else "the waveform"
            raise FesaError(
                f"{where} is {source.samples} samples at {g.sample_rate} Hz, shorter than the encoder's receptive field "
                f"({g.receptive_field} samples, {1000 * g.receptive_field / g.sample_rate:g} ms)"
            )
        windows = plan_windows(source.samples, self.window, self.hop, g)
        logits, log_weights = [], []
        pooled = _RunningPool()
        for start, (a, b) in zip(windows.starts, windows.keep):
            out = self._window(source.read(start, min(windows.length, source.samples - start)))
            first = start // g.hop
            logits.append(out["frame_logits"][a - first : b - first])
            log_weights.append(out["log_weights"][a - first : b - first])
            pooled.add(out["frames"][a - first : b - first], log_weights[-1])
        probabilities = torch.softmax(self.model.head(pooled.mean()).float(), dim=-1).cpu().numpy()
        return self._prediction(source.samples / g.sample_rate, probabilities, torch.cat(logits), torch.cat(log_weights))

    def _prediction(self, duration: float, probabilities: np.ndarray, frame_logits: torch.Tensor, log_w: torch.Tensor) -> Prediction:
        posteriors = torch.softmax(frame_logits.float(), dim=-1).cpu().numpy()
        rate = self.geometry.frame_rate
        return Prediction(
            duration=duration,
            labels=self.labels,
            label=self.labels[int(probabilities.argmax())],
            probabilities=probabilities,
            frame_posteriors=posteriors,
            pooling_weights=torch.softmax(log_w, dim=0).cpu().numpy(),
            segments=frames_to_segments(posteriors, self.labels, rate, duration, self.median, self.min_segment),
            frame_rate=rate,
        )

    def _window(self, wav: np.ndarray) -> Dict[str, torch.Tensor]:
        x = prepare_waveform(torch.from_numpy(wav).to(self.device), self.normalize)
        with autocast(self.device, self.precision):
            out = self.model.frame_outputs(x[None])
        return {k: v[0].float() for k, v in out.items() if k != "padding_mask"}


class _RunningPool:
    """softmax(log_weights)-weighted mean of frames, accumulated window by window (log-sum-exp)."""

    def __init__(self) -> None:
        self.peak: Optional[torch.Tensor] = None
        self.total = self.weighted = None

    def add(self, frames: torch.Tensor, log_weights: torch.Tensor) -> None:
        peak = log_weights.max() if self.peak is None else torch.maximum(self.peak, log_weights.max())
        w = torch.exp(log_weights - peak)
        total, weighted = w.sum(), w.to(frames.dtype) @ frames
        if self.peak is not None:
            scale = torch.exp(self.peak - peak)
            total, weighted = total + self.total * scale, weighted + self.weighted * scale.to(frames.dtype)
        self.peak, self.total, self.weighted = peak, total, weighted

    def mean(self) -> torch.Tensor:
        return self.weighted / self.total.to(self.weighted.dtype)
