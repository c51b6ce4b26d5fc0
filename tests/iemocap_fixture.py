"""A miniature IEMOCAP release in the real on-disk format, with the quirks a parser must survive."""

from pathlib import Path
from typing import Dict, List

import numpy as np
import soundfile as sf

ALL_CODES = ["neu", "hap", "exc", "ang", "sad", "fru", "sur", "fea", "dis", "oth", "xxx"]
HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def _turn_block(utt_id: str, start: float, code: str) -> str:
    return (
        f"[{start:.4f} - {start + 1.5:.4f}]\t{utt_id}\t{code}\t[2.5000, 3.0000, 2.5000]\n"
        "C-E2:\tNeutral;\t()\n"
        "C-E3:\tFrustration; Anger;\t(annoyed)\n"
        "C-F1:\tNeutral;\t(curious)\n"
        "A-E3:\tval 3; act 2; dom  2;\t()\n"
        "A-F1:\tval 3; act 2; dom  1;\t(mildly aggravated but staying polite, attitude)\n"
        "\n"
    )


def write_wav(path: Path, seconds: float, seed: int, sr: int = 16000) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(seconds * sr)
    sf.write(str(path), 0.1 * np.random.default_rng(seed).standard_normal(n), sr, subtype="PCM_16")
    return n


def make_iemocap_tree(root: Path) -> Dict[str, Dict[str, object]]:
    """Two dialogs per session (an improvised and a scripted one), every emotion code for both speakers.

    Returns, per kept utterance id, what a correct parser must find: session, speaker, label, samples.
    """
    expected: Dict[str, Dict[str, object]] = {}
    for s in range(1, 6):
        ev_dir = root / f"Session{s}" / "dialog" / "EmoEvaluation"
        for decoy in ("Categorical", "Attribute", "Self-evaluation"):
            (ev_dir / decoy).mkdir(parents=True, exist_ok=True)
            (ev_dir / decoy / f"Ses0{s}F_impro01_e1_cat.txt").write_text(
                f"[1.0 - 2.0]\tSes0{s}F_impro01_F099\tneu\t[2.5, 2.5, 2.5]\nSes0{s}F_impro01_F000 :Neutral state; ()\n"
            )
        for dialog in (f"Ses0{s}F_impro01", f"Ses0{s}M_script01_1"):
            text, clock = HEADER, 1.0
            counters = {"F": 0, "M": 0}
            for i, code in enumerate(ALL_CODES * 2):
                gender = "FM"[i % 2]
                utt_id = f"{dialog}_{gender}{counters[gender]:03d}"
                counters[gender] += 1
                text += _turn_block(utt_id, clock, code)
                clock += 2.0
                wav = root / f"Session{s}" / "sentences" / "wav" / dialog / f"{utt_id}.wav"
                n = write_wav(wav, 0.2 + 0.01 * i, seed=1000 * s + i)
                (wav.parent / f"._{utt_id}.wav").write_bytes(b"\x00\x05\x16\x07AppleDouble junk")
                label = {"exc": "hap"}.get(code, code)
                if label in ("neu", "hap", "ang", "sad"):
                    expected[utt_id] = {"session": s, "speaker": f"Ses0{s}{gender}", "label": label, "code": code, "samples": n}
            (ev_dir / f"{dialog}.txt").write_text(text)
            (ev_dir / f"._{dialog}.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \xff\xfe")
    return expected


def kept_ids(expected: Dict[str, Dict[str, object]], session: int) -> List[str]:
    return sorted(u for u, e in expected.items() if e["session"] == session)
