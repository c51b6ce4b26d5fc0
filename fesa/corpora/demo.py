"""A small synthetic emotional speech corpus in IEMOCAP's on-disk layout, for the demo and the tests.

The generator is a classic source-filter synthesiser, written out here so that every cue is known:

* **Utterance.** 1–4 s, split into 1–3 *phrases* separated by 100–300 ms pauses, with 50–200 ms of silence
  at both ends. A phrase is a run of syllables; a syllable is an optional unvoiced onset (40–70 ms of
  band-passed noise, a fricative) and a voiced vowel (120–250 ms at neutral tempo) drawn from a, e, i, o, u.
* **Source.** A glottal pulse train whose period follows a pitch contour (phrase declination from +1 to −2
  semitones, one accent per syllable, linear within the syllable, cycle-to-cycle jitter), shaped by a
  two-pole low-pass (spectral tilt: a tense voice is brighter, a breathy one darker) and lip radiation,
  plus aspiration noise in proportion to breathiness.
* **Filter.** A cascade of four formant resonators (F1–F3 of the vowel, F4 at 3.5 kHz), scaled by the
  speaker's vocal-tract factor.
* **Speakers.** Each session has a female and a male speaker with their own pitch (about 210 Hz and 115 Hz,
  ± a few percent), vocal-tract scale (about 1.17 and 1.0) and loudness.
* **Emotions.** Each code has a prosody (:data:`PROSODY`): pitch level and range, tempo, energy, spectral
  tilt, breathiness and jitter. The paper's point is built in: in an emotional utterance of several
  phrases, only some phrases carry the utterance's emotion and the others are spoken neutrally, so the
  frame-level emotional state differs from the utterance label. The truth per segment is written to
  ``fesa_demo_segments.tsv`` (utterance, start, end in seconds, emotion) for frame-level analyses.
* **Labels.** Codes are drawn per speaker in IEMOCAP-like proportions, including exc (merged into hap by
  the protocol) and codes that the protocol drops (fru, sur, xxx), so preparation is exercised for real.

Everything derives from one seed: the same seed gives byte-identical files.
"""

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Tuple

import numpy as np
import soundfile as sf
from scipy.signal import lfilter
from tqdm import tqdm

from fesa.corpora.iemocap import SAMPLE_RATE, SESSIONS
from fesa.errors import FesaError
from fesa.files import atomic_write_json, staged_dir, write_manifest
from fesa.options import HOLDOUT, DemoCorpusOptions, PretrainingCorpusOptions

logger = logging.getLogger(__name__)

SR = SAMPLE_RATE
DEMO_SEGMENTS_FILE = "fesa_demo_segments.tsv"
DEMO_MARKER = "fesa_demo.json"  # at the root of a demo corpus: its generator's settings
PRETRAINING_MARKER = "fesa_pretraining.json"
VOWELS = {"a": (730, 1090, 2440), "e": (530, 1840, 2480), "i": (270, 2290, 3010), "o": (570, 840, 2410), "u": (300, 870, 2240)}
BANDWIDTHS = (80.0, 100.0, 140.0, 200.0)


@dataclass(frozen=True)
class Prosody:
    pitch: float  # multiplier on the speaker's f0
    pitch_range: float  # multiplier on accent and declination excursions
    tempo: float  # multiplier on syllable rate
    energy: float  # multiplier on loudness
    tilt: float  # pole radius of the glottal low-pass: higher is darker and softer
    breath: float  # aspiration noise relative to voicing
    jitter: float  # relative cycle-to-cycle f0 perturbation


PROSODY: Dict[str, Prosody] = {
    "neu": Prosody(1.00, 1.0, 1.00, 1.00, 0.90, 0.05, 0.005),
    "hap": Prosody(1.25, 1.8, 1.15, 1.35, 0.84, 0.04, 0.008),
    "exc": Prosody(1.30, 2.0, 1.20, 1.45, 0.82, 0.04, 0.009),
    "ang": Prosody(1.12, 1.3, 1.22, 1.90, 0.70, 0.02, 0.018),
    "sad": Prosody(0.86, 0.45, 0.74, 0.55, 0.96, 0.28, 0.004),
    "fru": Prosody(1.05, 1.1, 1.05, 1.40, 0.78, 0.06, 0.012),
    "sur": Prosody(1.40, 2.2, 1.00, 1.20, 0.85, 0.05, 0.006),
    "xxx": Prosody(1.08, 1.3, 1.05, 1.20, 0.84, 0.08, 0.010),
}
# IEMOCAP-like share of each code among a speaker's turns.
CODE_SHARES = {"neu": 0.26, "hap": 0.12, "exc": 0.10, "ang": 0.17, "sad": 0.17, "fru": 0.08, "sur": 0.04, "xxx": 0.06}
VAD = {"neu": 2.5, "hap": 4.0, "exc": 4.0, "ang": 1.5, "sad": 1.5, "fru": 2.0, "sur": 3.5, "xxx": 2.5}


@dataclass(frozen=True)
class Speaker:
    name: str  # e.g. Ses01F
    f0: float
    tract: float
    gain: float


def speakers_of_session(session: int, rng: np.random.Generator) -> Dict[str, Speaker]:
    return {
        "F": Speaker(f"Ses0{session}F", 210.0 * rng.uniform(0.92, 1.08), 1.17 * rng.uniform(0.96, 1.04), rng.uniform(0.85, 1.15)),
        "M": Speaker(f"Ses0{session}M", 115.0 * rng.uniform(0.92, 1.08), 1.00 * rng.uniform(0.96, 1.04), rng.uniform(0.85, 1.15)),
    }


def code_sequence(n: int, rng: np.random.Generator) -> List[str]:
    """n codes in CODE_SHARES proportions (largest remainder), shuffled."""
    exact = {c: s * n for c, s in CODE_SHARES.items()}
    counts = {c: int(v) for c, v in exact.items()}
    for c in sorted(exact, key=lambda c: counts[c] - exact[c])[: n - sum(counts.values())]:
        counts[c] += 1
    codes = [c for c in CODE_SHARES for _ in range(counts[c])]
    rng.shuffle(codes)
    return codes


def _resonate(x: np.ndarray, freq: float, bw: float) -> np.ndarray:
    r = np.exp(-np.pi * bw / SR)
    c = 2 * r * np.cos(2 * np.pi * freq / SR)
    return lfilter([1 - c + r * r], [1, -c, r * r], x)


def _envelope(n: int, ramp: int) -> np.ndarray:
    env = np.ones(n)
    ramp = min(ramp, n // 2)
    if ramp > 0:
        rise = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
        env[:ramp], env[n - ramp :] = rise, rise[::-1]
    return env


def _vowel(rng: np.random.Generator, dur: float, f0_start: float, f0_end: float, p: Prosody, spk: Speaker) -> np.ndarray:
    n = int(dur * SR)
    f0 = np.linspace(f0_start, f0_end, n) * (1 + p.jitter * rng.standard_normal(n).cumsum() / np.sqrt(np.arange(1, n + 1)))
    phase = np.cumsum(f0 / SR)
    pulses = np.diff(np.floor(phase), prepend=0.0)
    source = lfilter([1.0], [1, -2 * p.tilt, p.tilt**2], pulses)
    source = np.diff(source, prepend=0.0)
    source = source / (np.std(source) + 1e-9) + p.breath * 3 * rng.standard_normal(n)
    formants = [f * spk.tract * rng.uniform(0.95, 1.05) for f in VOWELS[rng.choice(list(VOWELS))]] + [3500.0 * spk.tract]
    y = source
    for freq, bw in zip(formants, BANDWIDTHS):
        y = _resonate(y, min(freq, 0.45 * SR), bw)
    return y / (np.std(y) + 1e-9) * _envelope(n, int(0.015 * SR))


def _fricative(rng: np.random.Generator, dur: float) -> np.ndarray:
    n = int(dur * SR)
    y = _resonate(rng.standard_normal(n), rng.uniform(3000, 5500), 1500.0)
    return 0.35 * y / (np.std(y) + 1e-9) * _envelope(n, int(0.01 * SR))


def _phrase(rng: np.random.Generator, dur: float, p: Prosody, spk: Speaker) -> np.ndarray:
    """Syllables (optional fricative onset + vowel) until the next one would overrun `dur` (at least one)."""
    plan: List[Tuple[float, float]] = []
    elapsed = 0.0
    while True:
        onset = rng.uniform(0.04, 0.07) if rng.random() < 0.6 else 0.0
        vowel = rng.uniform(0.12, 0.25) / p.tempo
        if plan and elapsed + onset + vowel > dur:
            break
        plan.append((onset, vowel))
        elapsed += onset + vowel
    semis = (np.linspace(1.0, -2.0, len(plan) + 1) + rng.normal(0.0, 2.0, len(plan) + 1)) * p.pitch_range
    f0 = spk.f0 * p.pitch * 2 ** (semis / 12)
    parts = []
    for i, (onset, vowel) in enumerate(plan):
        if onset:
            parts.append(_fricative(rng, onset))
        parts.append(_vowel(rng, vowel, f0[i], f0[i + 1], p, spk) * p.energy)
    return np.concatenate(parts)


def emotional_phrases(code: str, n_phrases: int, rng: np.random.Generator) -> List[str]:
    """Which phrases carry `code`: all of a one-phrase utterance, else some, and mostly not all."""
    if code == "neu" or n_phrases == 1:
        return [code] * n_phrases
    carry = rng.random(n_phrases) < 0.6
    carry[rng.integers(n_phrases)] = True
    if carry.all() and rng.random() < 0.7:
        carry[rng.integers(n_phrases)] = False
    if not carry.any():
        carry[0] = True
    return [code if c else "neu" for c in carry]


def _utterance(spk: Speaker, rng: np.random.Generator, phrases: Callable[[int], Iterable[Tuple[Prosody, str]]]):
    """The layout both generators share: silence, 1-3 phrases split by pauses, silence.

    `phrases(n)` gives each phrase's prosody and label; it is iterated phrase by phrase, so a generator draws
    from `rng` between phrases. Returns the speech, its segments (start s, end s, label) and the planned length.
    """
    total = rng.uniform(1.0, 4.0)
    n_phrases = 1 if total < 1.6 else int(rng.integers(2, 4))
    lead, tail = rng.uniform(0.05, 0.2, 2)
    pauses = rng.uniform(0.1, 0.3, n_phrases - 1)
    speech = total - lead - tail - pauses.sum()
    shares = rng.dirichlet(np.full(n_phrases, 4.0)) * speech
    pieces, segments = [np.zeros(int(lead * SR))], []
    at = len(pieces[0])
    for i, ((prosody, label), dur) in enumerate(zip(phrases(n_phrases), shares)):
        wave = _phrase(rng, dur, prosody, spk)
        segments.append((at / SR, (at + len(wave)) / SR, label))
        gap = np.zeros(int((pauses[i] if i < n_phrases - 1 else tail) * SR))
        pieces += [wave, gap]
        at += len(wave) + len(gap)
    return np.concatenate(pieces), segments, total


def _finish(x: np.ndarray, spk: Speaker, rng: np.random.Generator) -> np.ndarray:
    x = x * 0.08 * spk.gain
    x += 10 ** (-55 / 20) * rng.standard_normal(len(x))
    return np.clip(x, -1.0, 1.0)


def synthesize(code: str, spk: Speaker, rng: np.random.Generator) -> Tuple[np.ndarray, List[Tuple[float, float, str]]]:
    """One utterance and its segments (start s, end s, emotion) of speech; the rest is silence."""
    x, segments, total = _utterance(spk, rng, lambda n: [(PROSODY[e], e) for e in emotional_phrases(code, n, rng)])
    x = np.pad(x, (0, max(0, int(total * SR) - len(x))))  # syllables may undershoot the plan
    return _finish(x, spk, rng), segments


def random_prosody(rng: np.random.Generator) -> Prosody:
    """Each prosodic dimension drawn on its own within the span PROSODY covers: varied speech, no emotion."""
    spans = {
        name: (min(getattr(p, name) for p in PROSODY.values()), max(getattr(p, name) for p in PROSODY.values()))
        for name in Prosody.__dataclass_fields__
    }
    return Prosody(**{name: float(rng.uniform(low, high)) for name, (low, high) in spans.items()})


def synthesize_unlabelled(spk: Speaker, rng: np.random.Generator) -> np.ndarray:
    """An utterance like :func:`synthesize`'s whose every phrase has a prosody of its own and no emotion."""
    x, _, _ = _utterance(spk, rng, lambda n: ((random_prosody(rng), "") for _ in range(n)))
    return _finish(x, spk, rng)


def make_pretraining_corpus(
    out_dir: Path,
    speakers: int = PretrainingCorpusOptions.speakers,
    utterances_per_speaker: int = PretrainingCorpusOptions.utterances_per_speaker,
    seed: int = PretrainingCorpusOptions.seed,
    valid_fraction: float = HOLDOUT.valid_fraction,
    overwrite: bool = False,
    progress: bool = True,
) -> Dict[str, object]:
    """Unlabelled speech of speakers who belong to no session, for pretraining the demo's source model.

    It plays the part LibriSpeech plays for hubert_base_ls960: audio from outside every fold, with prosody that
    varies (each phrase draws its own, see :func:`random_prosody`) but carries no emotion label. Writes
    ``{train,valid}.tsv`` fairseq manifests and the wavs, staged and moved into place whole.
    """
    out_dir = Path(out_dir)
    with staged_dir(out_dir, overwrite, marker=PRETRAINING_MARKER) as staging:
        rows = []
        for i in tqdm(range(speakers), desc="pretraining corpus", unit="speaker", disable=not progress):
            rng = np.random.default_rng([seed, i])
            base = speakers_of_session(0, rng)["F" if i % 2 == 0 else "M"]
            spk = Speaker(f"pre{i:02d}", base.f0 * rng.uniform(0.85, 1.15), base.tract * rng.uniform(0.95, 1.05), base.gain)
            (staging / spk.name).mkdir()
            for j in range(utterances_per_speaker):
                x = synthesize_unlabelled(spk, np.random.default_rng([seed, i, j]))
                rel = f"{spk.name}/{spk.name}_{j:03d}.wav"
                sf.write(str(staging / rel), x, SR, subtype="PCM_16")
                rows.append((rel, len(x)))
        held = set(np.random.default_rng(seed).permutation(len(rows))[: max(1, int(valid_fraction * len(rows)))].tolist())
        for split, keep in (("train", lambda k: k not in held), ("valid", lambda k: k in held)):
            write_manifest(staging / f"{split}.tsv", out_dir.resolve(), [r for k, r in enumerate(rows) if keep(k)])
        info = {
            "generator": "fesa.corpora.demo.make_pretraining_corpus",
            "seed": seed,
            "speakers": speakers,
            "utterances": len(rows),
            "seconds": round(sum(n for _, n in rows) / SR, 1),
        }
        atomic_write_json(staging / PRETRAINING_MARKER, info)
    return info


def _evaluation_block(utt_id: str, start: float, end: float, code: str) -> List[str]:
    v = VAD[code]
    word = {
        "neu": "Neutral",
        "hap": "Happiness",
        "exc": "Excited",
        "ang": "Anger",
        "sad": "Sadness",
        "fru": "Frustration",
        "sur": "Surprise",
        "xxx": "Other",
    }[code]
    return [
        f"[{start:.4f} - {end:.4f}]\t{utt_id}\t{code}\t[{v:.4f}, 2.5000, 2.5000]",
        f"C-E1:\t{word};\t()",
        f"C-E2:\t{word};\t()",
        f"A-E1:\tval {round(v)}; act 3; dom  3;\t()",
        "",
    ]


DIALOGS = ("F_impro01", "M_impro02", "F_script01_1")


class SourceFilter:
    """The synthesiser described at the top of this module."""

    name = "source-filter"

    def speakers(self, session: int, rng: np.random.Generator) -> Dict[str, Speaker]:
        return speakers_of_session(session, rng)

    def utterance(self, code: str, speaker: Speaker, rng: np.random.Generator) -> Tuple[np.ndarray, List[Tuple[float, float, str]]]:
        return synthesize(code, speaker, rng)

    def describe(self) -> Dict[str, object]:
        return {"prosody": {c: asdict(p) for c, p in PROSODY.items()}}


def write_session(root: Path, session: int, per_speaker: int, seed: int, segments_out: List[str], synth=None) -> int:
    synth = synth or SourceFilter()
    rng = np.random.default_rng([seed, session])
    speakers = synth.speakers(session, rng)
    codes = {g: code_sequence(per_speaker, rng) for g in speakers}
    eval_dir = root / f"Session{session}" / "dialog" / "EmoEvaluation"
    eval_dir.mkdir(parents=True)
    written = 0
    for d, suffix in enumerate(DIALOGS):
        dialog = f"Ses0{session}{suffix}"
        wav_dir = root / f"Session{session}" / "sentences" / "wav" / dialog
        wav_dir.mkdir(parents=True)
        lines, clock = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""], 1.0
        turns = {g: codes[g][d :: len(DIALOGS)] for g in speakers}
        order = [g for i in range(max(map(len, turns.values()))) for g in speakers if i < len(turns[g])]
        index = {g: 0 for g in speakers}
        for g in order:
            code = turns[g][index[g]]
            utt_id = f"{dialog}_{g}{index[g]:03d}"
            index[g] += 1
            x, segments = synth.utterance(code, speakers[g], np.random.default_rng([seed, session, d, len(lines)]))
            sf.write(str(wav_dir / f"{utt_id}.wav"), x, SR, subtype="PCM_16")
            start = clock + 0.5
            clock = start + len(x) / SR
            lines += _evaluation_block(utt_id, start, clock, code)
            segments_out += [f"{utt_id}\t{a:.3f}\t{b:.3f}\t{e}" for a, b, e in segments]
            written += 1
        (eval_dir / f"{dialog}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return written


def make_demo_corpus(
    out_dir: Path,
    utterances_per_speaker: int = DemoCorpusOptions.utterances_per_speaker,
    seed: int = DemoCorpusOptions.seed,
    overwrite: bool = False,
    progress: bool = True,
    synth=None,
) -> Dict[str, object]:
    """Write the corpus to a staging folder beside `out_dir`, then move it into place whole.

    `synth` makes the speakers and utterances (default :class:`SourceFilter`; ``corpora.espeak`` has another).
    """
    synth = synth or SourceFilter()
    out_dir = Path(out_dir)
    if utterances_per_speaker < len(DIALOGS):
        raise FesaError(f"--utterances-per-speaker must be at least {len(DIALOGS)}, got {utterances_per_speaker}")
    with staged_dir(out_dir, overwrite, marker=DEMO_MARKER) as staging:
        segments = ["utt_id\tstart\tend\temotion"]
        total = 0
        for session in tqdm(SESSIONS, desc="demo corpus", unit="session", disable=not progress):
            total += write_session(staging, session, utterances_per_speaker, seed, segments, synth)
        (staging / DEMO_SEGMENTS_FILE).write_text("\n".join(segments) + "\n", encoding="utf-8")
        info = {
            "generator": "fesa.corpora.demo",
            "synthesizer": synth.name,
            "seed": seed,
            "utterances_per_speaker": utterances_per_speaker,
            "utterances": total,
            **synth.describe(),
        }
        atomic_write_json(staging / DEMO_MARKER, info)
    return info
