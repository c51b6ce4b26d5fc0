import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from fesa.corpora.demo import DEMO_SEGMENTS_FILE, make_demo_corpus
from fesa.corpora.iemocap import prepare_iemocap
from fesa.errors import FesaError
from fesa.segments import read_segment_lines

from tiny_hubert import run_fesa


def digest(root):
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "corpus"
    make_demo_corpus(root, utterances_per_speaker=12, seed=0, progress=False)
    return root


def test_same_seed_same_bytes(corpus, tmp_path):
    make_demo_corpus(tmp_path / "again", utterances_per_speaker=12, seed=0, progress=False)
    make_demo_corpus(tmp_path / "other", utterances_per_speaker=12, seed=1, progress=False)
    assert digest(tmp_path / "again") == digest(corpus)
    assert digest(tmp_path / "other") != digest(corpus)


def test_prepares_into_five_folds(corpus, tmp_path):
    summary = prepare_iemocap(corpus, tmp_path / "m", check_totals=False, progress=False)  # --no-check-totals: no release
    assert summary["utterances"] == 5 * 2 * 9  # 12 turns per speaker, 3 of them fru/sur/xxx
    for k in range(1, 6):
        sizes = summary["folds"][k]
        assert sizes["test"] == 18 and sizes["train"] + sizes["valid"] == 72 and sizes["valid"] > 0
        for split in ("train", "valid", "test"):
            assert (tmp_path / "m" / f"fold{k}" / f"{split}.emo").is_file()
    assert set(summary["per_session"][1]) == {"neu", "hap", "ang", "sad"}


def test_audio_is_16k_mono_of_one_to_four_seconds(corpus):
    wavs = list((corpus / "Session2" / "sentences" / "wav").rglob("*.wav"))
    assert len(wavs) == 24
    for w in wavs:
        info = sf.info(str(w))
        assert (info.samplerate, info.channels) == (16000, 1)
        assert 1.0 <= info.duration <= 4.1


def test_only_some_phrases_carry_the_emotion(corpus):
    segments = read_segment_lines(corpus / DEMO_SEGMENTS_FILE)
    listing = {}
    for ev in corpus.glob("Session*/dialog/EmoEvaluation/*.txt"):
        for line in ev.read_text().splitlines():
            if line.startswith("["):
                _, utt, code, _ = line.split("\t")
                listing[utt] = code
    assert set(segments) == set(listing)
    mixed = [u for u, segs in segments.items() if listing[u] != "neu" and {s.label for s in segs} == {listing[u], "neu"}]
    pure = [u for u, segs in segments.items() if listing[u] != "neu" and {s.label for s in segs} == {listing[u]}]
    assert len(mixed) >= 20 and len(pure) >= 20
    for u, segs in segments.items():
        assert all(s.label in (listing[u], "neu") for s in segs)
        assert listing[u] != "neu" or {s.label for s in segs} == {"neu"}


def test_emotions_differ_in_loudness_where_they_are_carried(corpus):
    """Angry segments are louder than neutral ones, which are louder than sad ones (same speakers)."""
    segments = read_segment_lines(corpus / DEMO_SEGMENTS_FILE)
    wav_of = {p.stem: p for p in corpus.rglob("*.wav")}
    energy = {"ang": [], "neu": [], "sad": []}
    for utt, segs in segments.items():
        x, sr = sf.read(str(wav_of[utt]))
        for s in segs:
            if s.label in energy:
                energy[s.label].append(np.sqrt(np.mean(x[int(s.start * sr) : int(s.end * sr)] ** 2)))
    mean = {e: np.mean(v) for e, v in energy.items()}
    assert mean["ang"] > 1.3 * mean["neu"] > 1.3 * 1.3 * mean["sad"]


def test_existing_folder_is_not_overwritten(corpus, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(FesaError, match="already exists and is not empty"):
        make_demo_corpus(out, utterances_per_speaker=3, progress=False)
    assert (out / "mine.txt").read_text() == "keep me"
    with pytest.raises(FesaError, match="has no fesa_demo.json, so it was not written by this command"):
        make_demo_corpus(out, utterances_per_speaker=3, overwrite=True, progress=False)  # not ours: never wiped
    assert (out / "mine.txt").read_text() == "keep me"
    make_demo_corpus(tmp_path / "d", utterances_per_speaker=4, progress=False)
    make_demo_corpus(tmp_path / "d", utterances_per_speaker=3, overwrite=True, progress=False)
    assert json.loads((tmp_path / "d" / "fesa_demo.json").read_text())["utterances"] == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "d"]  # no staging folder left behind


def test_cli(tmp_path):
    res = run_fesa("-q", "make-demo-corpus", tmp_path / "c", "--utterances-per-speaker", "3", "--seed", "5")
    assert res.returncode == 0, res.stderr
    assert "wrote 30 utterances" in res.stdout
    res = run_fesa("-q", "make-demo-corpus", tmp_path / "c")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and str(tmp_path / "c") in res.stderr


def test_pretraining_corpus_has_no_session_speaker_and_no_labels(tmp_path):
    from fesa.corpora.demo import make_pretraining_corpus
    from fesa_fairseq.data.files import read_manifest

    info = make_pretraining_corpus(tmp_path / "pre", speakers=2, utterances_per_speaker=5, progress=False)
    root, train = read_manifest(tmp_path / "pre" / "train.tsv")
    _, valid = read_manifest(tmp_path / "pre" / "valid.tsv")
    assert info["utterances"] == len(train) + len(valid) == 10 and len(valid) == 1
    assert {rel.split("/")[0] for rel, _ in train + valid} == {"pre00", "pre01"}
    for rel, n in train + valid:
        wav, sr = sf.read(f"{root}/{rel}")
        assert sr == 16000 and len(wav) == n and 1.0 <= n / sr <= 4.2
    assert not list((tmp_path / "pre").rglob("*.emo")) and not list((tmp_path / "pre").rglob("EmoEvaluation"))
    with pytest.raises(FesaError, match="already exists and is not empty"):
        make_pretraining_corpus(tmp_path / "pre", speakers=1, utterances_per_speaker=1, progress=False)


def test_espeak_corpus_prepares_like_the_demo(tmp_path):
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (.ci/run installs it: apt-get install espeak-ng)")
    from fesa.corpora.espeak import Espeak

    root = tmp_path / "esp"
    make_demo_corpus(root, utterances_per_speaker=4, seed=0, progress=False, synth=Espeak())
    assert json.loads((root / "fesa_demo.json").read_text())["synthesizer"] == "espeak-ng"
    summary = prepare_iemocap(root, tmp_path / "m", valid_fraction=0.25, check_totals=False, progress=False)
    assert summary["utterances"] > 0
    wavs = sorted(root.rglob("*.wav"))
    assert len(wavs) == 5 * 2 * 4
    wav, sr = sf.read(wavs[0])
    assert sr == 16000 and wav.ndim == 1  # espeak-ng's 22,050 Hz resampled
    segments = read_segment_lines(root / DEMO_SEGMENTS_FILE)
    assert set(segments) == {w.stem for w in wavs}
