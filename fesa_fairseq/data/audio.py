"""The one place audio files are checked and read: 16 kHz mono wavs whose sample count the manifest states.

``where`` prefixes every message with the place that names the file (``manifest.tsv:12: ``), so that a user's
mistake is reported where it can be fixed.
"""

import struct
from math import gcd
from pathlib import Path
from typing import Optional, Union

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from fesa_fairseq.errors import InputError

PathLike = Union[str, Path]


def check_audio(path: PathLike, sample_rate: int, samples: Optional[int] = None, where: str = "") -> int:
    """Exists, readable, ``sample_rate`` Hz, mono, and (when given) ``samples`` long, from its header alone.

    Returns its length in samples."""
    info = audio_info(path, where, "wav")
    _check(path, info.samplerate, info.channels, info.frames, sample_rate, samples, where)
    return info.frames


def audio_info(path: PathLike, where: str = "", kind: str = "wav") -> "sf._SoundFileInfo":
    """soundfile's header of ``path``, or an error naming it: missing, or not audio soundfile reads."""
    if not Path(path).is_file():
        raise InputError(f"{where}missing {kind} {path}")
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.SoundFileError) as e:
        raise InputError(f"{where}cannot read {kind} {path}: {' '.join(str(e).split())}") from e
    promised = wav_declared_frames(path) if info.format == "WAV" else None
    if promised is not None and promised > info.frames:
        raise InputError(
            f"{where}{path} is truncated: its header says {promised} samples ({promised / info.samplerate:.2f} s) "
            f"but it holds {info.frames} ({info.frames / info.samplerate:.2f} s); re-export or re-copy the file"
        )
    return info


def wav_declared_frames(path: PathLike) -> Optional[int]:
    """Frames a RIFF wav's data chunk says it holds. libsndfile quietly reads what is there instead, so a file cut
    short (a copy that stopped) would otherwise pass as a shorter recording. None where the header cannot say
    (no data chunk found, or the size a streaming writer leaves: 0 or 0xFFFFFFFF)."""
    with open(path, "rb") as f:
        if f.read(4) != b"RIFF" or f.seek(8) != 8 or f.read(4) != b"WAVE":
            return None
        block_align = None
        while len(head := f.read(8)) == 8:
            chunk, size = head[:4], struct.unpack("<I", head[4:])[0]
            if chunk == b"fmt ":
                fmt = f.read(min(size, 16))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
                f.seek(size - len(fmt) + (size & 1), 1)
            elif chunk == b"data":
                return size // block_align if block_align and 0 < size < 0xFFFFFFFF else None
            else:
                f.seek(size + (size & 1), 1)
    return None


def read_audio(path: PathLike, sample_rate: int, samples: Optional[int] = None, where: str = "") -> np.ndarray:
    """The samples (float32), after the checks of :func:`check_audio` and :func:`checked_samples`."""
    info = audio_info(path, where, "wav")
    _check(path, info.samplerate, info.channels, info.frames, sample_rate, samples, where)
    return checked_samples(_decode(path, 0, info.frames, where), path, 0, info.frames, sample_rate, where)[:, 0]


def _decode(path: PathLike, first: int, count: int, where: str = "") -> np.ndarray:
    """Samples [first, first + count) as frames × channels; a decoding failure of any format names the file."""
    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(first)
            return f.read(count, dtype="float32", always_2d=True)
    except (RuntimeError, sf.SoundFileError) as e:
        raise InputError(f"{where}cannot decode {path}: {' '.join(str(e).split())}") from e


def checked_samples(wav: np.ndarray, path: PathLike, first: int, count: int, rate: int, where: str = "") -> np.ndarray:
    """Refuse what a model would silently turn into a wrong answer: fewer samples than the header promised (a
    truncated file) and NaN or infinite samples (every class would score NaN). Neither is repaired: the file is."""
    if len(wav) < count:
        held = first + len(wav)
        raise InputError(
            f"{where}{path} is truncated: its header says {first + count} samples ({(first + count) / rate:.2f} s) or more "
            f"but it holds {held} ({held / rate:.2f} s); re-export or re-copy the file"
        )
    bad = ~np.isfinite(wav)
    if bad.any():
        at = first + int(np.flatnonzero(bad.any(axis=1))[0])
        raise InputError(
            f"{where}{path} holds {int(bad.sum())} NaN or infinite sample(s), the first at {at / rate:.3f} s; "
            "repair or re-export the file (a model scores such audio as NaN)"
        )
    return wav


def _check(path: PathLike, sr: int, channels: int, frames: int, sample_rate: int, samples: Optional[int], where: str) -> None:
    if sr != sample_rate or channels != 1:
        raise InputError(f"{where}{path} is {sr} Hz with {channels} channel(s); {sample_rate} Hz mono expected")
    if frames <= 0:
        raise InputError(f"{where}{path} holds no samples")
    if samples is not None and frames != samples:
        raise InputError(
            f"{where}{path} has {frames} samples but the manifest says {samples}; re-create the manifest (fesa prepare-iemocap) or fix the count"
        )


class AudioSource:
    """Any audio soundfile reads (wav, flac, ogg; any rate and channel count), or an array, as mono windows at
    ``rate`` Hz. Channels are averaged; other rates go through scipy's polyphase resampler, window by window
    with a margin, so that a file of an hour is never in memory whole."""

    MARGIN = 0.25  # seconds read beyond each side of a window, so the resampler's edges fall outside it

    def __init__(
        self, path: Optional[PathLike] = None, array: Optional[np.ndarray] = None, sample_rate: Optional[int] = None, rate: int = 16000
    ) -> None:
        self.path, self.rate, self._array = path, rate, None
        if array is not None:
            if sample_rate is None:
                raise InputError("a waveform needs its sample_rate")
            wav = np.asarray(array, dtype=np.float32)
            self._array = wav if wav.ndim == 2 else wav[:, None]
            self.native_rate, self.channels, native = int(sample_rate), self._array.shape[1], len(self._array)
        else:
            info = audio_info(path, kind="audio file")
            self.native_rate, self.channels, native = info.samplerate, info.channels, info.frames
        if native <= 0:
            raise InputError(f"{path if path is not None else 'the waveform'} holds no samples")
        g = gcd(rate, self.native_rate)
        self.up, self.down = rate // g, self.native_rate // g
        self.samples = -(-native * self.up // self.down)  # resample_poly's output length
        self._native = native

    @property
    def converted(self) -> bool:
        return self.native_rate != self.rate or self.channels != 1

    def read(self, start: int, length: int) -> np.ndarray:
        """Samples [start, start + length) at ``rate``, mono."""
        if not self.converted:
            return self._native_read(start, start + length)[:, 0]
        margin = int(self.MARGIN * self.rate)
        first = max(0, start - margin) // self.up * self.down  # a native index that falls on an output sample
        last = min(self._native, -(-(start + length + margin) * self.down // self.up))
        wav = resample_poly(self._native_read(first, last).mean(axis=1), self.up, self.down).astype(np.float32)
        offset = start - first * self.up // self.down
        return wav[offset : offset + length]

    def _native_read(self, first: int, last: int) -> np.ndarray:
        wav = self._array[first:last] if self._array is not None else _decode(self.path, first, last - first)
        return checked_samples(wav, self.path if self.path is not None else "the waveform", first, last - first, self.native_rate)
