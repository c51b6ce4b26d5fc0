"""Score a fine-tuned classifier on a split: every utterance whole, alone and once, through the one scorer
(``inference.recognizer.EmotionRecognizer``, which fesa predict uses), on CPU or CUDA."""

import logging
from collections import Counter
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from fesa.checkpoints import load_model, require_classifier
from fesa.devices import precision_name, resolve_device, resolve_precision
from fesa.errors import FesaError, user_errors
from fesa.files import atomic_write_json, atomic_write_lines, write_manifest
from fesa.inference.eder import eder
from fesa.inference.recognizer import EmotionRecognizer, Prediction
from fesa.options import DEVICE, METRICS_FILE, NEUTRAL, ScoringOptions
from fesa.plots import plot_confusion, plot_timeline
from fesa.segments import Segment
from fesa_fairseq.data.files import read_manifest
from fesa_fairseq.data.labels import read_label_dictionary, read_labelled_split
from fesa_fairseq.scoring import confusion_matrix, counts_of, macro_f1, unweighted_accuracy, weighted_accuracy

logger = logging.getLogger(__name__)


def load_scorer(
    checkpoint: str, fold_dir: str, device: torch.device, precision: Optional[torch.dtype], batch_seconds: Optional[float] = None
) -> Tuple[EmotionRecognizer, object]:
    """The one scorer (fesa predict's) around the classifier, whose task reads the fold; its classes must be the fold's.
    ``batch_seconds``: audio per encoder pass (None: the device's default, fesa.options.SCORING_BATCH_SECONDS)."""
    require_classifier(checkpoint, needs_labels=False)
    model, _, task = load_model(checkpoint, arg_overrides={"data": str(fold_dir)})
    listed, _ = read_label_dictionary(task.dict_path)
    if list(task.labels) != listed:
        raise FesaError(
            f"{checkpoint} was trained on classes {list(task.labels)} but {task.dict_path} lists {listed}; "
            "use a fold with the same dict.emo.txt classes in the same order"
        )
    return EmotionRecognizer.from_task(model, task, device, precision, window=None, batch_seconds=batch_seconds), task


def score_split(recognizer: EmotionRecognizer, task, split: str, progress: bool = True) -> Dict[str, object]:
    """Every utterance of the split whole, once, as if alone (as fesa predict scores it; batched by length where the
    recognizer batches): its probabilities and its frame-level prediction. The task's dataset checks the manifest,
    the labels and every wav's header first."""
    task.load_dataset(split)
    dataset = task.dataset(split)
    results = recognizer.predict_many(recognizer.source(path) for path in dataset.paths)
    predictions = []
    for result in tqdm(results, desc=f"scoring {split}", unit="utt", total=len(dataset.paths), disable=not progress):
        if isinstance(result, user_errors()):
            raise result
        predictions.append(result)
    prob = np.stack([p.probabilities for p in predictions])
    return {"prob": prob, "prediction": prob.argmax(-1), "target": dataset.targets, "paths": dataset.paths, "frames": predictions}


def evaluate(
    checkpoint: str,
    fold_dir: str,
    split: str,
    out_dir: str,
    device: str = DEVICE,
    progress: bool = True,
    timelines: int = 0,
    reference: Optional[Mapping[str, dict]] = None,
    neutral: str = NEUTRAL,
    precision: str = ScoringOptions.precision,
    about: Optional[Dict[str, object]] = None,
    batch_seconds: Optional[float] = ScoringOptions.batch_seconds,
) -> Dict[str, object]:
    """Write predictions.tsv, metrics.json and confusion.png (and timelines) under out_dir; return the metrics.

    ``reference``: where the corpus knows which stretches carry the emotion (fesa convert-segments' layout), the
    frame-level figures of the model go to metrics.json too (``frame_level``: EDER and attention focus) and the
    true segments are marked on the timelines. Each utterance goes through the model once for all of it.
    """
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    recognizer, _ = scorer = load_scorer(checkpoint, fold_dir, dev, dtype, batch_seconds)
    if reference and neutral not in recognizer.labels:
        raise FesaError(
            f"--neutral {neutral} is not one of {checkpoint}'s classes ({', '.join(recognizer.labels)}): name the class of unemotional time"
        )
    result = score_split(*scorer, split, progress)
    about = {"checkpoint": str(checkpoint), "data": str(fold_dir), "split": split, "precision": precision_name(dtype), **(about or {})}
    if reference:
        about["frame_level"] = frame_figures(result["frames"], result["paths"], reference, neutral)
        write_frame_rows(Path(out_dir), about["frame_level"].pop("per_utterance", {}))
    if timelines:
        truth = {utt: [Segment.of_event(e) for e in entry["emotion"]] for utt, entry in (reference or {}).items()}
        plot_timelines(recognizer, result, Path(out_dir) / "timelines", timelines, truth)
    return write_results(Path(out_dir), result["paths"], result["target"], result["prob"], recognizer.labels, about)


def frame_figures(predictions: Sequence[Prediction], paths: Sequence[str], reference: Mapping[str, dict], neutral: str) -> Dict[str, object]:
    """How the model's frames line up with the true segments, over the scored utterances that have them.

    eder: Emotion Diarization Error Rate (%) of the model's frame-level segments (fesa predict's). attention_focus:
    per utterance with emotional (non-neutral) segments, the share of pooling weight on them divided by their
    share of the duration (1.0: no focus), then the mean.
    """
    hypothesis, truth, focus = {}, {}, {}
    for pred, path in zip(predictions, paths):
        utt = Path(path).stem
        if utt not in reference:
            continue
        hypothesis[utt] = pred.diarization(str(path))
        truth[utt] = reference[utt]
        share = attention_focus(pred.pooling_weights, pred.frame_rate, truth[utt]["emotion"], pred.duration, neutral)
        if share is not None:
            focus[utt] = share
    if not truth:
        return {}
    scored = eder(truth, hypothesis, neutral=neutral)
    return {
        "eder": round(scored["eder"], 2),
        "attention_focus": round(float(np.mean(list(focus.values()))), 3) if focus else None,
        "utterances": len(truth),
        "focus_utterances": len(focus),
        "neutral": neutral,
        "per_utterance": {utt: (value, focus.get(utt)) for utt, value in scored["per_utterance"].items()},
    }


def write_frame_rows(out: Path, rows: Mapping[str, Tuple[float, Optional[float]]]) -> None:
    """frame_level.tsv: EDER (a fraction) and attention focus per utterance, for the report's paired statistics."""
    lines = ["utt_id\teder\tattention_focus"] + [f"{utt}\t{e:.6f}\t{'' if f is None else f'{f:.6f}'}" for utt, (e, f) in rows.items()]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_lines(out / "frame_level.tsv", lines)


def attention_focus(weights: np.ndarray, frame_rate: float, events: Sequence[Mapping], duration: float, neutral: str) -> Optional[float]:
    emotional = [(float(e["start"]), float(e["end"])) for e in events if e["emo"] != neutral]
    if not emotional or duration <= 0:
        return None
    centres = (np.arange(len(weights)) + 0.5) / frame_rate
    inside = np.zeros(len(weights), dtype=bool)
    for start, end in emotional:
        inside |= (centres >= start) & (centres < end)
    covered = inside.mean() if len(weights) else 0.0  # the share of frames (of duration) the emotional events cover
    return float(weights[inside].sum() / covered) if covered > 0 else None


def write_results(
    out: Path, paths: Sequence[str], targets: Sequence[int], prob: np.ndarray, labels: List[str], about: Dict[str, object]
) -> Dict[str, object]:
    """predictions.tsv, confusion.png and, last (it marks the scoring complete), metrics.json.

    Every scorer (a fine-tuned classifier, the acoustic reference) writes these same files, so the report reads
    them all alike.
    """
    prediction = prob.argmax(-1)
    matrix = confusion_matrix(targets, prediction, len(labels))
    counts = counts_of(matrix)
    metrics = {
        **about,
        "utterances": int(matrix.sum()),
        "ua": round(unweighted_accuracy(counts), 2),
        "wa": round(weighted_accuracy(counts), 2),
        "macro_f1": round(macro_f1(matrix), 2),
        "labels": labels,
        "recall": {label: round(100 * c / t, 2) if t else None for label, (c, t) in zip(labels, counts)},
        "confusion": matrix.tolist(),
    }
    rows = ["utt_id\tlabel\tprediction\t" + "\t".join(f"p_{label}" for label in labels)]
    for path, t, p, pr in zip(paths, targets, prediction, prob):
        rows.append(f"{Path(path).stem}\t{labels[t]}\t{labels[p]}\t" + "\t".join(f"{x:.4f}" for x in pr))
    atomic_write_lines(out / "predictions.tsv", rows)
    split = about.get("split", "")
    plot_confusion(matrix, labels, out / "confusion.png", title=f"{split}: UA {metrics['ua']:.1f}%  WA {metrics['wa']:.1f}%")
    atomic_write_json(out / METRICS_FILE, metrics)
    return metrics


def plot_timelines(
    recognizer: EmotionRecognizer, result: Mapping[str, object], out: Path, count: int, segments: Mapping[str, Sequence[Segment]]
) -> None:
    """One picture per utterance (the first `count` of the split): the pooling weight of every frame, from the
    scoring pass itself; segments, where given, are marked."""
    out.mkdir(parents=True, exist_ok=True)
    labels = recognizer.labels
    for i, (path, pred) in enumerate(zip(result["paths"][:count], result["frames"])):
        source = recognizer.source(path)
        utt = Path(path).stem
        title = f"{utt}: true {labels[result['target'][i]]}, predicted {pred.label}"
        plot_timeline(source.read(0, source.samples), source.rate, pred.pooling_weights, out / f"{utt}.png", title, segments.get(utt, ()))


def parse_mapping(text: str) -> Dict[str, str]:
    """--map RAW=CLASS,RAW=CLASS (several RAW may name one CLASS)."""
    pairs = [item.partition("=") for item in text.split(",") if item.strip()]
    if not pairs or any(not sep or not raw.strip() or not cls.strip() for raw, sep, cls in pairs):
        raise FesaError(f"--map {text!r}: give RAW=CLASS pairs separated by commas, e.g. angry=ang,happy=hap,neutral=neu")
    raws = [raw.strip() for raw, _, _ in pairs]
    twice = sorted({raw for raw in raws if raws.count(raw) > 1})
    if twice:
        raise FesaError(f"--map gives {', '.join(twice)} more than once: map each label to one class")
    return {raw.strip(): cls.strip() for raw, _, cls in pairs}


def mapped_fold(checkpoint: str, fold_dir: Path, split: str, mapping: Dict[str, str], out: Path) -> Dict[str, object]:
    """A fold folder at ``out`` holding the split's utterances whose label the mapping names, labelled with the
    model's classes (its own dict.emo.txt): another corpus, scored as the model's own test split would be."""
    data = read_labelled_split(fold_dir, split)
    typos = sorted(set(mapping) - set(data.labels))
    if typos:
        held = f"{Path(fold_dir) / 'dict.emo.txt'} does not hold (its labels: {', '.join(data.labels)})"
        raise FesaError(f"--map names {', '.join(typos)}, which {held}")
    labels = list(require_classifier(checkpoint).task_state["labels"])
    unknown = sorted(set(mapping.values()) - set(labels))
    if unknown:
        raise FesaError(f"--map names {', '.join(unknown)}, which {checkpoint} does not predict (its classes: {', '.join(labels)})")
    root, rows = read_manifest(Path(fold_dir) / f"{split}.tsv")
    raw = [data.labels[t] for t in data.targets]
    kept = [i for i, label in enumerate(raw) if label in mapping]
    if not kept:
        raise FesaError(f"no utterance of {Path(fold_dir) / f'{split}.emo'} has a label --map names (its labels: {', '.join(data.labels)})")
    write_manifest(out / f"{split}.tsv", root, [rows[i] for i in kept])
    atomic_write_lines(out / f"{split}.emo", [mapping[raw[i]] for i in kept])
    counts = Counter(mapping[raw[i]] for i in kept)
    atomic_write_lines(out / "dict.emo.txt", [f"{c} {counts[c]}" for c in labels])
    dropped = Counter(label for label in raw if label not in mapping)
    return {
        "mapping": mapping,
        "kept": len(kept),
        "dropped": dict(sorted(dropped.items())),
        "unmapped_classes": sorted(set(labels) - set(mapping.values())),
    }
