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
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from fesa.checkpoints import HUBERT_GEOMETRY, FrameGeometry, load_model, require_classifier
from fesa.devices import autocast, resolve_batch_seconds, resolve_device, resolve_precision
from fesa.errors import FesaError, user_errors
from fesa.inference.segments import frames_to_segments
from fesa.options import DEVICE, FrameOptions, ScoringOptions
from fesa.segments import Segment
from fesa_fairseq.data.audio import AudioSource
from fesa_fairseq.data.waveform import prepare_waveform
from fesa_fairseq.models.batching import length_batches

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
        batch_seconds: Optional[float] = None,
    ) -> None:
        self.geometry = FrameGeometry.of(model.encoder.w2v_model, sample_rate)
        FrameOptions(window, hop, median, min_segment).check(self.geometry.receptive_field / sample_rate)
        self.model, self.labels, self.device, self.normalize = model, list(labels), device, normalize
        self.precision = precision
        self.batch_samples = int(resolve_batch_seconds(batch_seconds, device) * sample_rate)  # 0: one at a time
        self.window, self.hop, self.median, self.min_segment = window, hop, median, min_segment

    @classmethod
    def from_checkpoint(
        cls, path: Union[str, Path], device: str = DEVICE, precision: str = ScoringOptions.precision, **options
    ) -> "EmotionRecognizer":
        """``precision``: fp32, bf16, fp16 or auto (:func:`fesa.devices.resolve_precision`)."""
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

    def predict_source(self, source: AudioSource) -> Prediction:
        result = next(self.predict_many([source]))
        if isinstance(result, user_errors()):
            raise result
        return result

    def predict_many(self, sources: Iterable[Union[AudioSource, Exception]]) -> Iterator[Union[Prediction, Exception]]:
        """One result per source, in order: its Prediction, or the FesaError that stopped it (an error given in
        place of a source is passed on). The windows of the sources within a stretch of ``LOOKAHEAD`` batches are
        scored together, in batches of ``batch_samples`` sorted by length; one at a time when that is 0."""
        chunk: List[Union[AudioSource, Exception]] = []
        for source in sources:
            chunk.append(source)
            if sum(s.samples for s in chunk if isinstance(s, AudioSource)) >= self.batch_samples * LOOKAHEAD:
                yield from self._predict_chunk(chunk)
                chunk = []
        if chunk:
            yield from self._predict_chunk(chunk)

    @torch.no_grad()
    def _predict_chunk(self, chunk: Sequence[Union[AudioSource, Exception]]) -> List[Union[Prediction, Exception]]:
        states = [s if isinstance(s, user_errors()) else self._start(s) for s in chunk]
        jobs = [(k, w) for k, state in enumerate(states) if isinstance(state, _Recording) for w in range(len(state.windows.starts))]
        for batch in length_batches([states[k].length(w) for k, w in jobs], self.batch_samples):
            self._score([jobs[i] for i in batch], states)
        return [state.finish(self) if isinstance(state, _Recording) else state for state in states]

    def _start(self, source: AudioSource) -> Union["_Recording", Exception]:
        g = self.geometry
        if source.samples < g.receptive_field:
            where = source.path if source.path is not None else "the waveform"
            return FesaError(
                f"{where} is {source.samples} samples at {g.sample_rate} Hz, shorter than the encoder's receptive field "
                f"({g.receptive_field} samples, {1000 * g.receptive_field / g.sample_rate:g} ms)"
            )
        return _Recording(source, plan_windows(source.samples, self.window, self.hop, g))

    def _score(self, jobs: Sequence[Tuple[int, int]], states: List[Union["_Recording", Exception]]) -> None:
        """One encoder pass over the windows ``jobs`` (recording, window); a recording whose audio cannot be read
        becomes its error."""
        waves, kept = [], []
        for k, w in jobs:
            if isinstance(states[k], user_errors()):
                continue
            try:
                waves.append(states[k].read(w))
            except user_errors() as e:
                states[k] = e
                continue
            kept.append((k, w))
        if not kept:
            return
        out = self._windows([prepare_waveform(torch.from_numpy(wav).to(self.device), self.normalize) for wav in waves])
        frames = (~out["padding_mask"]).sum(-1).tolist()
        for i, (k, w) in enumerate(kept):
            if isinstance(states[k], _Recording):
                states[k].add(w, {name: out[name][i, : frames[i]] for name in ("frames", "frame_logits", "log_weights")}, self.geometry.hop)

    def _windows(self, waves: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        with autocast(self.device, self.precision):
            out = self.model.frame_outputs_batched(waves)
        return {k: v if k == "padding_mask" else v.float() for k, v in out.items()}

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


LOOKAHEAD = 8  # batches' worth of audio whose windows are sorted by length together (the outputs wait that long)


class _Recording:
    """A recording being scored window by window, in any order: each window's kept frames, and the pooled mean."""

    def __init__(self, source: AudioSource, windows: Windows) -> None:
        self.source, self.windows = source, windows
        self.logits: Dict[int, torch.Tensor] = {}
        self.log_weights: Dict[int, torch.Tensor] = {}
        self.pooled = _RunningPool()

    def length(self, w: int) -> int:
        return min(self.windows.length, self.source.samples - self.windows.starts[w])

    def read(self, w: int) -> np.ndarray:
        return self.source.read(self.windows.starts[w], self.length(w))

    def add(self, w: int, out: Dict[str, torch.Tensor], hop: int) -> None:
        first = self.windows.starts[w] // hop
        a, b = (i - first for i in self.windows.keep[w])
        self.logits[w], self.log_weights[w] = out["frame_logits"][a:b], out["log_weights"][a:b]
        self.pooled.add(out["frames"][a:b], self.log_weights[w])

    def finish(self, recognizer: EmotionRecognizer) -> Prediction:
        order = range(len(self.windows.starts))
        probabilities = torch.softmax(recognizer.model.head(self.pooled.mean()).float(), dim=-1).cpu().numpy()
        duration = self.source.samples / recognizer.geometry.sample_rate
        return recognizer._prediction(
            duration, probabilities, torch.cat([self.logits[w] for w in order]), torch.cat([self.log_weights[w] for w in order])
        )


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
