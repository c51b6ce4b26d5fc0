"""A second synthetic corpus, made differently from the demo's: espeak-ng speaking English sentences.

It exists to check that a configuration tuned on the demo corpus is not tuned to that corpus alone. Nothing
is shared with :mod:`fesa.corpora.demo` but the layout and the share of codes: another synthesiser
(espeak-ng's formant synthesis, through its command line), real words, espeak's own voice variants as
speakers, and emotions as SSML prosody (pitch, pitch range, rate, volume) with other values and other
relations between cues than the demo's. As in the demo, only some phrases of an emotional utterance carry
its emotion (the truth goes to ``fesa_demo_segments.tsv``). espeak-ng writes 22,050 Hz audio; it is
resampled to IEMOCAP's 16 kHz with scipy's polyphase filter.

Needs the ``espeak-ng`` program (Debian: ``apt-get install espeak-ng``).
"""

import io
import shutil
import subprocess
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from fesa.corpora.demo import SR, emotional_phrases
from fesa.errors import FesaError

# SSML prosody per code: pitch and rate in percent of the voice's, range as espeak's words, volume in dB.
PROSODY: Dict[str, Tuple[int, str, int, float]] = {
    "neu": (0, "medium", 100, 0.0),
    "hap": (18, "x-high", 112, 3.0),
    "exc": (24, "x-high", 118, 4.0),
    "ang": (6, "high", 125, 8.0),
    "sad": (-15, "x-low", 78, -7.0),
    "fru": (4, "high", 108, 4.0),
    "sur": (30, "x-high", 100, 2.0),
    "xxx": (5, "medium", 105, 1.0),
}
VOICES = {"F": ("f1", "f2", "f3", "f4", "f5"), "M": ("m1", "m2", "m3", "m4", "m6")}
WORDS = (
    "the",
    "a",
    "my",
    "your",
    "old",
    "new",
    "little",
    "house",
    "car",
    "dog",
    "letter",
    "garden",
    "window",
    "train",
    "river",
    "morning",
    "evening",
    "friend",
    "sister",
    "brother",
    "came",
    "went",
    "saw",
    "found",
    "left",
    "opened",
    "closed",
    "is",
    "was",
    "never",
    "always",
    "today",
    "yesterday",
    "again",
    "here",
    "there",
    "after",
    "before",
    "really",
    "quite",
    "early",
    "late",
    "home",
    "work",
    "back",
    "outside",
)


@dataclass(frozen=True)
class EspeakSpeaker:
    name: str
    voice: str  # espeak voice variant, e.g. en+f3
    pitch: int  # espeak -p, 0..99
    rate: int  # espeak -s, words per minute


class Espeak:
    name = "espeak-ng"

    def __init__(self, program: str = "espeak-ng") -> None:
        found = shutil.which(program)
        if found is None:
            raise FesaError(f"{program} is not installed: apt-get install espeak-ng (or use the source-filter synthesiser)")
        self.program = found

    def speakers(self, session: int, rng: np.random.Generator) -> Dict[str, EspeakSpeaker]:
        return {
            g: EspeakSpeaker(f"Ses0{session}{g}", f"en+{VOICES[g][session - 1]}", int(rng.integers(35, 66)), int(rng.integers(150, 181)))
            for g in ("F", "M")
        }

    def utterance(self, code: str, spk: EspeakSpeaker, rng: np.random.Generator) -> Tuple[np.ndarray, List[Tuple[float, float, str]]]:
        n_phrases = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
        lead = np.zeros(int(rng.uniform(0.05, 0.2) * SR))
        pieces, segments, at = [lead], [], len(lead)
        for emotion in emotional_phrases(code, n_phrases, rng):
            wave = self._say(self._sentence(rng), emotion, spk, rng)
            segments.append((at / SR, (at + len(wave)) / SR, emotion))
            gap = np.zeros(int(rng.uniform(0.1, 0.3) * SR))
            pieces += [wave, gap]
            at += len(wave) + len(gap)
        x = np.concatenate(pieces)
        x += 10 ** (-55 / 20) * rng.standard_normal(len(x))
        return np.clip(x, -1.0, 1.0), segments

    def describe(self) -> Dict[str, object]:
        return {"prosody (pitch %, range, rate %, volume dB)": PROSODY, "voices": VOICES}

    @staticmethod
    def _sentence(rng: np.random.Generator) -> str:
        return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 8))))

    def _say(self, text: str, emotion: str, spk: EspeakSpeaker, rng: np.random.Generator) -> np.ndarray:
        pitch, pitch_range, rate, volume = PROSODY[emotion]
        pitch += int(rng.integers(-6, 7))
        rate = int(rate * rng.uniform(0.93, 1.07))
        ssml = f"<speak><prosody pitch='{pitch:+d}%' range='{pitch_range}' rate='{rate}%'>{text}</prosody></speak>"
        args = [self.program, "-v", spk.voice, "-p", str(spk.pitch), "-s", str(spk.rate), "-m", "--stdout", ssml]
        try:
            out = subprocess.run(args, check=True, capture_output=True).stdout
        except subprocess.CalledProcessError as e:
            raise FesaError(f"espeak-ng failed ({' '.join(args[:-1])}): {e.stderr.decode(errors='replace').strip()}") from e
        wav, sr = sf.read(io.BytesIO(out), dtype="float64")
        wav = resample_poly(wav, SR, sr) if sr != SR else wav
        return 0.25 * wav / (np.abs(wav).max() + 1e-9) * 10 ** (volume / 20)  # loudness is ours, not espeak's
