"""Score a fine-tuned classifier on a split: whole utterances, batched by length, on CPU or CUDA."""

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from fairseq import utils
from tqdm import tqdm

from fesa_fairseq.checkpoints import load_model, require_classifier
from fesa_fairseq.data.files import atomic_write_json, atomic_write_lines
from fesa_fairseq.data.labels import read_label_dictionary
from fesa_fairseq.devices import autocast, precision_name, resolve_device, resolve_precision
from fesa_fairseq.errors import FesaError
from fesa_fairseq.inference.eder import eder
from fesa_fairseq.inference.recognizer import EmotionRecognizer
from fesa_fairseq.plots import plot_confusion, plot_timeline
from fesa_fairseq.scoring import confusion_matrix, counts_of, unweighted_accuracy, weighted_accuracy

logger = logging.getLogger(__name__)

Segment = Tuple[float, float, str]  # start (s), end (s), emotion


def load_classifier(checkpoint: str, fold_dir: str, device: torch.device):
    require_classifier(checkpoint, needs_labels=False)
    model, _, task = load_model(checkpoint, arg_overrides={"data": str(fold_dir)})
    listed, _ = read_label_dictionary(task.dict_path)
    if list(task.labels) != listed:
        raise FesaError(
            f"{checkpoint} was trained on classes {list(task.labels)} but {task.dict_path} lists {listed}; "
            "use a fold with the same dict.emo.txt classes in the same order"
        )
    return model.eval().to(device), task


@torch.no_grad()
def predict(
    model, task, split: str, device: torch.device, max_tokens: int, progress: bool = True, precision: Optional[torch.dtype] = None
) -> Dict[str, np.ndarray]:
    task.load_dataset(split)
    dataset = task.dataset(split)
    # A group-normalised front end (HuBERT base's) normalises each channel over the whole input, padding included:
    # padded in a batch, an utterance would score differently than alone. One at a time, it scores as in fesa predict.
    one_by_one = padding_changes_frames(model)
    batches = task.get_batch_iterator(
        dataset=dataset,
        max_tokens=max_tokens,
        max_sentences=1 if one_by_one else None,
        ignore_invalid_inputs=False,
        required_batch_size_multiple=1,
    ).next_epoch_itr(shuffle=False)
    ids: List[np.ndarray] = []
    probs: List[np.ndarray] = []
    for sample in tqdm(batches, desc=f"scoring {split}", unit="batch", disable=not progress):
        sample = utils.apply_to_sample(lambda t: t.to(device), sample)
        with autocast(device, precision):
            logits = model(**sample["net_input"])["logits"].float()
        ids.append(sample["id"].cpu().numpy())
        probs.append(torch.softmax(logits, dim=-1).cpu().numpy())
    order = np.argsort(np.concatenate(ids))
    prob = np.concatenate(probs)[order]
    return {"prob": prob, "prediction": prob.argmax(-1), "target": dataset.targets, "paths": dataset.paths}


def padding_changes_frames(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.GroupNorm) for m in model.encoder.w2v_model.feature_extractor.modules())


def evaluate(
    checkpoint: str,
    fold_dir: str,
    split: str,
    out_dir: str,
    device: str = "auto",
    max_tokens: int = 1_600_000,
    progress: bool = True,
    timelines: int = 0,
    reference: Optional[Mapping[str, dict]] = None,
    neutral: str = "neu",
    precision: str = "fp32",
) -> Dict[str, object]:
    """Write predictions.tsv, metrics.json and confusion.png (and timelines) under out_dir; return the metrics.

    ``reference``: where the corpus knows which stretches carry the emotion (fesa convert-segments' layout), the
    frame-level figures of the model go to metrics.json too (``frame_level``: EDER and attention focus) and the
    true segments are marked on the timelines.
    """
    dev = resolve_device(device)
    dtype = resolve_precision(precision, dev)
    model, task = load_classifier(checkpoint, fold_dir, dev)
    result = predict(model, task, split, dev, max_tokens, progress, dtype)
    labels = list(task.labels)
    about: Dict[str, object] = {"checkpoint": str(checkpoint), "data": str(fold_dir), "split": split, "precision": precision_name(dtype)}
    if reference:
        recognizer = EmotionRecognizer(model, labels, dev, normalize=bool(task.cfg.normalize), precision=dtype)
        about["frame_level"] = frame_figures(recognizer, result["paths"], reference, neutral)
    if timelines:
        truth = {utt: [(float(e["start"]), float(e["end"]), str(e["emo"])) for e in entry["emotion"]] for utt, entry in (reference or {}).items()}
        plot_timelines(model, task.dataset(split), result, labels, dev, Path(out_dir) / "timelines", timelines, truth)
    return write_results(Path(out_dir), result["paths"], result["target"], result["prob"], labels, about)


def frame_figures(recognizer: EmotionRecognizer, paths: Sequence[str], reference: Mapping[str, dict], neutral: str) -> Dict[str, object]:
    """How the model's frames line up with the true segments, over the scored utterances that have them.

    eder: Emotion Diarization Error Rate (%) of the model's frame-level segments (fesa predict's). attention_focus:
    per utterance with emotional (non-neutral) segments, the share of pooling weight on them divided by their
    share of the duration (1.0: no focus), then the mean.
    """
    hypothesis, truth, focus = {}, {}, []
    for path in paths:
        utt = Path(path).stem
        if utt not in reference:
            continue
        pred = recognizer.predict(path)
        hypothesis[utt] = pred.diarization(str(path))
        truth[utt] = reference[utt]
        share = attention_focus(pred.pooling_weights, pred.frame_rate, truth[utt]["emotion"], pred.duration, neutral)
        if share is not None:
            focus.append(share)
    if not truth:
        return {}
    return {
        "eder": round(eder(truth, hypothesis, neutral=neutral)["eder"], 2),
        "attention_focus": round(float(np.mean(focus)), 3) if focus else None,
        "utterances": len(truth),
        "focus_utterances": len(focus),
        "neutral": neutral,
    }


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
    atomic_write_json(out / "metrics.json", metrics)
    return metrics


@torch.no_grad()
def plot_timelines(
    model, dataset, result, labels: List[str], device: torch.device, out: Path, count: int, segments: Mapping[str, Sequence[Segment]]
) -> None:
    """One picture per utterance (the first `count` of the split): what the model attends to, frame by frame.

    The input is the dataset's (whole, normalised as scored); segments, where given, are marked.
    """
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(result["paths"][:count]):
        source = dataset[i]["source"]
        attention = model(source[None].to(device), None)["attention"][0].float().cpu().numpy()
        utt = Path(path).stem
        title = f"{utt}: true {labels[result['target'][i]]}, predicted {labels[result['prediction'][i]]}"
        plot_timeline(source.numpy(), dataset.sample_rate, attention, out / f"{utt}.png", title, segments.get(utt, ()))


def format_confusion(matrix: List[List[int]], labels: List[str]) -> str:
    width = max(6, *(len(label) for label in labels))
    lines = ["true\\pred".ljust(width + 2) + "".join(label.rjust(width) for label in labels)]
    for label, row in zip(labels, matrix):
        lines.append(label.ljust(width + 2) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)
