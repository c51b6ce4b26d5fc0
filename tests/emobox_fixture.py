"""A small corpus in EmoBox's layout (data/<name>/...), with audio as EmoBox's corpora hold it: other rates, stereo,
flac, ogg and wav, and one utterance cut out of a longer file by start/end times."""

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import soundfile as sf

NAME = "toyemo"
# five raw labels, four classes: "excited" and "happy" are one class, as EmoBox merges IEMOCAP's
LABEL_MAP = {"neutral": "neu", "happy": "hap", "excited": "hap", "angry": "ang", "sad": "sad"}
RAW = ("neutral", "happy", "excited", "angry", "sad")
FORMATS = (("wav", 48000, 2), ("flac", 44100, 2), ("ogg", 48000, 1), ("wav", 44100, 1))


def write_audio(path: Path, seconds: float, rate: int, channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.2 * np.sin(2 * np.pi * (150 + 20 * seed % 200) * t) + 0.02 * rng.standard_normal(len(t))
    wav = np.stack([mono, 0.5 * mono], axis=1) if channels == 2 else mono
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav.astype(np.float32), rate)


def make_emobox_corpus(base: Path, speakers: int = 4, per_label: int = 2) -> Tuple[Path, Path, List[dict]]:
    """data/<NAME>/ (4 folds: leave one speaker out; fold 4 has its own valid list) and the audio root."""
    corpus, audio = base / "data" / NAME, base / "audio_root"
    rows: List[dict] = []
    for spk in range(speakers):
        for r, raw in enumerate(RAW):
            for i in range(per_label):
                n = len(rows)
                ext, rate, channels = FORMATS[n % len(FORMATS)]
                wav = f"{NAME}/spk{spk}/{raw}_{i}.{ext}"
                write_audio(audio / wav, 0.6 + 0.1 * (n % 5), rate, channels, seed=n)
                rows.append(
                    {
                        "key": f"{NAME}-spk{spk}-{raw}-{i}",
                        "dataset": NAME,
                        "wav": wav,
                        "sample_rate": rate,
                        "emo": raw,
                        "channel": channels,
                        "spk": spk,
                    }
                )
    long_wav = f"{NAME}/spk0/session.wav"  # one utterance cut from the middle of a longer recording
    write_audio(audio / long_wav, 3.0, 44100, 2, seed=99)
    rows.append({"key": f"{NAME}-spk0-cut", "dataset": NAME, "wav": long_wav, "emo": "angry", "start_time": 1.0, "end_time": 1.75, "spk": 0})
    corpus.mkdir(parents=True, exist_ok=True)
    write_jsonl(corpus / f"{NAME}.jsonl", rows)
    (corpus / "label_map.json").write_text(json.dumps(LABEL_MAP))
    for k in range(1, speakers + 1):
        test = [r for r in rows if r["spk"] == k - 1]
        train = [r for r in rows if r["spk"] != k - 1]
        folder = corpus / f"fold_{k}"
        if k == speakers:  # the one fold that comes with its own validation list
            valid, train = [r for r in train if r["spk"] == 0], [r for r in train if r["spk"] != 0]
            write_jsonl(folder / f"{NAME}_valid_fold_{k}.jsonl", valid)
        write_jsonl(folder / f"{NAME}_train_fold_{k}.jsonl", train)
        write_jsonl(folder / f"{NAME}_test_fold_{k}.jsonl", test)
    return corpus, audio, rows


def write_jsonl(path: Path, rows: List[Dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "spk"}) + "\n" for r in rows))
