"""The acoustic reference: the floor every self-supervised model in a table must clear.

No self-supervised model: each utterance becomes statistics of its 13 Kaldi MFCCs (kaldi-native-fbank, C0
included, so loudness counts): mean, standard deviation, 10th and 90th percentile per coefficient, plus the
log duration. A standardiser and a class-balanced logistic regression (scikit-learn) are fitted on the
fold's training split for each regularisation strength in :data:`C_GRID`; the strength with the best
validation UA is refitted on training + validation and scored on the test split. The test split is never
seen before the last step, as for every model of the pipeline.
"""

import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

from fesa.errors import FesaError
from fesa.labels.readers import MfccFeatureReader
from fesa.options import BaselineOptions
from fesa.pipeline.evaluate import write_results
from fesa_fairseq.data.audio import read_audio
from fesa_fairseq.data.labels import LabelledSplit, read_labelled_split
from fesa_fairseq.scoring import confusion_matrix, counts_of, unweighted_accuracy

logger = logging.getLogger(__name__)

C_GRID = (0.01, 0.1, 1.0, 10.0)
PERCENTILES = (10, 90)


def utterance_statistics(mfcc: np.ndarray, seconds: float) -> np.ndarray:
    """frames x coefficients -> mean, std, percentiles per coefficient, then log duration."""
    if len(mfcc) == 0:
        mfcc = np.zeros((1, mfcc.shape[1]), dtype=np.float32)
    stats = [mfcc.mean(0), mfcc.std(0)] + [np.percentile(mfcc, q, axis=0) for q in PERCENTILES]
    return np.concatenate(stats + [np.array([np.log(max(seconds, 1e-3))])]).astype(np.float64)


def split_features(data: LabelledSplit, name: str, reader: MfccFeatureReader, progress: bool) -> np.ndarray:
    rows = []
    for path, size in tqdm(list(zip(data.paths, data.sizes)), desc=f"MFCC statistics of {name}", unit="utt", disable=not progress):
        wav = read_audio(path, reader.sample_rate, size)
        rows.append(utterance_statistics(reader.mfcc(wav), len(wav) / reader.sample_rate))
    return np.stack(rows)


def _model(c: float, seed: int):
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=5000, random_state=seed))


def _ua(targets: Sequence[int], prediction: np.ndarray, num_classes: int) -> float:
    return unweighted_accuracy(counts_of(confusion_matrix(targets, prediction, num_classes)))


def reference(
    fold_dir: str,
    out_dir: str,
    split: str = "test",
    seed: int = BaselineOptions.seed,
    progress: bool = True,
    about: Optional[Dict[str, object]] = None,
) -> Dict[str, object]:
    """Fit on the fold's train split, choose C on valid, refit on train + valid, score `split`; write evaluate's files
    (``about`` added to metrics.json: its cell in an experiment)."""
    BaselineOptions(seed).check()
    fold = Path(fold_dir)
    reader = MfccFeatureReader()
    data = {name: read_labelled_split(fold, name) for name in ("train", "valid", split)}
    labels = data["train"].labels
    missing = sorted(set(labels) - {labels[t] for t in data["train"].targets})
    if missing:
        raise FesaError(f"{fold / 'train.emo'} has no utterance of {', '.join(missing)}: the reference cannot learn those classes")
    x = {name: split_features(d, name, reader, progress) for name, d in data.items()}
    y = {name: np.asarray(d.targets) for name, d in data.items()}
    valid_ua: List[float] = []
    for c in C_GRID:
        model = _model(c, seed).fit(x["train"], y["train"])
        valid_ua.append(round(_ua(y["valid"], model.predict(x["valid"]), len(labels)), 2))
    best = C_GRID[int(np.argmax(valid_ua))]
    logger.info("valid UA per C %s: %s; refitting C=%g on train + valid", list(C_GRID), valid_ua, best)
    model = _model(best, seed).fit(np.concatenate([x["train"], x["valid"]]), np.concatenate([y["train"], y["valid"]]))
    prob = np.zeros((len(y[split]), len(labels)))
    prob[:, model.classes_] = model.predict_proba(x[split])
    about = {
        "model": "acoustic reference: MFCC statistics + class-balanced logistic regression",
        "data": str(fold),
        "split": split,
        "C": best,
        "valid_ua_per_C": dict(zip(map(str, C_GRID), valid_ua)),
        **(about or {}),
    }
    return write_results(Path(out_dir), data[split].paths, data[split].targets, prob, labels, about)
