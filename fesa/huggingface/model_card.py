"""The model card (README.md) of an exported classifier: classes, corpus, fold, protocol and scores.

The scores are those ``fesa evaluate`` wrote for this very checkpoint on its fold's test list (metrics.json
records the checkpoint it scored), with the acoustic reference of the same fold as the first row.
"""

import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from fesa.errors import FesaError

logger = logging.getLogger(__name__)

SCORE_KEYS = ("ua", "wa", "macro_f1", "utterances")


def _read(path: Path) -> Dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FesaError(f"cannot read {path}: {e}") from e


def _fold_dir(checkpoint: Path) -> Optional[Path]:
    return next((p for p in checkpoint.resolve().parents if re.fullmatch(r"fold\d+", p.name)), None)


def _scored_here(checkpoint: Path) -> Optional[Path]:
    """The test-split metrics.json of fesa run's evaluate stages that scored this checkpoint, if any."""
    fold = _fold_dir(checkpoint)
    for path in sorted(fold.glob("evaluate/*/metrics.json")) if fold else []:
        m = _read(path)
        if m.get("split") == "test" and m.get("checkpoint") and Path(m["checkpoint"]).resolve() == checkpoint.resolve():
            return path
    return None


def find_scores(checkpoint: Path, metrics: Optional[Path] = None) -> Dict[str, Any]:
    """This checkpoint's scores (``metrics``, else found beside it in a fesa run experiment), the acoustic reference
    of the same fold and what the fold's manifests say of the corpus; {} where nothing was scored."""
    path = Path(metrics) if metrics else _scored_here(checkpoint)
    if path is None:
        logger.warning("no metrics.json of fesa evaluate for %s was found: the model card will have no scores (give --metrics)", checkpoint)
        return {}
    found = _read(path)
    scores: Dict[str, Any] = {"metrics": str(path), "model": {k: found.get(k) for k in SCORE_KEYS}, "split": found.get("split")}
    reference = path.parent.parent / "reference" / "metrics.json"
    if reference.is_file():
        scores["reference"] = {k: _read(reference).get(k) for k in SCORE_KEYS}
    data = Path(found.get("data", ""))
    scores["fold"] = data.name or None
    prepared = data.parent / "prepare.json"
    if data.name and prepared.is_file():
        info = _read(prepared)
        scores["corpus"] = f"{info.get('format', 'iemocap')} {Path(str(info.get('corpus') or info.get('table') or info.get('root'))).name}"
        scores["fold_sizes"] = (info.get("folds") or {}).get(data.name.removeprefix("fold"))
    return scores


def _score_rows(scores: Dict[str, Any]) -> List[str]:
    rows = ["| | UA % | WA % | macro-F1 % | test utterances |", "|---|---|---|---|---|"]
    for name, key in (("acoustic reference (MFCC statistics + logistic regression)", "reference"), ("this model", "model")):
        if key in scores:
            s = scores[key]
            rows.append(f"| {name} | {s.get('ua')} | {s.get('wa')} | {s.get('macro_f1')} | {s.get('utterances')} |")
    return rows


PLAIN_USAGE = """```python
import soundfile as sf
from transformers import pipeline

classify = pipeline("audio-classification", model="{folder}")
audio, rate = sf.read("speech.wav", dtype="float32")  # mono, 16 kHz
print(classify({{"raw": audio, "sampling_rate": rate}}))  # [{{'label': ..., 'score': ...}}, ...]
```"""

REMOTE_USAGE = """```python
import soundfile as sf
import torch
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

model = AutoModelForAudioClassification.from_pretrained("{folder}", trust_remote_code=True).eval()
extract = AutoFeatureExtractor.from_pretrained("{folder}")
audio, rate = sf.read("speech.wav")  # mono, 16 kHz
with torch.no_grad():
    out = model(**extract(audio, sampling_rate=rate, return_tensors="pt"))
label = model.config.id2label[int(out.logits.argmax())]
frame_labels = out.frame_posteriors[0].argmax(-1)  # one class per 20 ms frame
weights = out.pooling_weights[0]  # how much each frame counted towards the utterance's label
```"""


def _protocol(scores: Dict[str, Any]) -> str:
    fold = scores.get("fold") or "its fold"
    sizes = scores.get("fold_sizes") or {}
    counts = f" ({sizes.get('train')} training, {sizes.get('valid')} validation, {sizes.get('test')} test utterances)" if sizes else ""
    return (
        f"{fold} of {scores.get('corpus', 'the corpus')}{counts}: fine-tuned on the training list, the best epoch chosen by "
        "validation UA on utterances held out of the training groups, scored on the test list (a session or group never seen "
        "in training or selection)."
    )


def source_name(checkpoint: Path) -> str:
    """The checkpoint's path from its fold folder on (fold1/finetune/L9-K50-attention/...), which says which stage
    made it; its file name elsewhere."""
    fold = _fold_dir(checkpoint)
    return str(checkpoint.resolve().relative_to(fold.parent)) if fold else checkpoint.name


def model_card(labels: List[str], kind: str, pooling: str, scores: Dict[str, Any], source: str, folder: str = "path/to/this/folder") -> str:
    plain = kind.startswith("HubertForSequenceClassification")
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: audio-classification",
        "tags: [speech-emotion-recognition, hubert, fesa_fairseq]",
        "---",
        "# Speech emotion recognition: a HuBERT classifier trained with fesa_fairseq",
        "",
        f"Exported by `fesa export --hf` (fesa_fairseq) from `{source}`: a HuBERT encoder, {pooling} pooling over its frames, "
        f"a linear output layer. transformers class: {kind}. Input: 16 kHz mono waveforms.",
        "",
        f"Classes, in output order: {', '.join(labels)}.",
        "",
        "## Scores",
        "",
    ]
    if scores.get("model"):
        lines += [f"Protocol: {_protocol(scores)} UA: mean per-class recall; WA: accuracy.", "", *_score_rows(scores)]
    else:
        lines.append("Not scored: no metrics.json of `fesa evaluate` was given or found for this checkpoint.")
    lines += ["", "## Use", "", (PLAIN_USAGE if plain else REMOTE_USAGE).format(folder=folder), ""]
    if not plain:
        lines += [
            "`frame_posteriors` (batch x frames x classes) is the output layer applied to each frame's encoding, softmax over the "
            "classes: which emotion each 20 ms frame carries. `pooling_weights` (batch x frames) sum to 1 over the real frames. "
            "Without a projection layer, the utterance logits are exactly the pooling-weighted sum of the frame logits.",
            "",
        ]
    return "\n".join(lines)
