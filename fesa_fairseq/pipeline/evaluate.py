"""Score a fine-tuned classifier on a split: whole utterances, batched by length, on CPU or CUDA."""

import json
import logging
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch
from fairseq import checkpoint_utils, utils
from tqdm import tqdm

from fesa_fairseq.checkpoints import inspect_checkpoint
from fesa_fairseq.devices import resolve_device
from fesa_fairseq.data.files import atomic_write_lines, atomic_write_text
from fesa_fairseq.errors import FesaError
from fesa_fairseq.plots import plot_confusion, plot_timeline
from fesa_fairseq.scoring import confusion_matrix, counts_of, unweighted_accuracy, weighted_accuracy

logger = logging.getLogger(__name__)


def load_classifier(checkpoint: str, fold_dir: str, device: torch.device):
    info = inspect_checkpoint(checkpoint)
    if not info.is_classifier:
        raise FesaError(f"{checkpoint} holds a {info.model!r} model; this needs a fine-tuned hubert_emotion_classifier checkpoint")
    models, _, task = checkpoint_utils.load_model_ensemble_and_task([checkpoint], arg_overrides={"data": str(fold_dir)})
    trained_on = info.task_state.get("labels")
    if trained_on is not None and list(trained_on) != list(task.labels):
        raise FesaError(
            f"{checkpoint} was trained on classes {list(trained_on)} but {task.dict_path} lists {task.labels}; "
            "use a fold with the same dict.emo.txt classes in the same order"
        )
    return models[0].eval().to(device), task


@torch.no_grad()
def predict(model, task, split: str, device: torch.device, max_tokens: int, progress: bool = True) -> Dict[str, np.ndarray]:
    task.load_dataset(split)
    dataset = task.dataset(split)
    batches = task.get_batch_iterator(
        dataset=dataset, max_tokens=max_tokens, ignore_invalid_inputs=False, required_batch_size_multiple=1
    ).next_epoch_itr(shuffle=False)
    ids: List[np.ndarray] = []
    probs: List[np.ndarray] = []
    for sample in tqdm(batches, desc=f"scoring {split}", unit="batch", disable=not progress):
        sample = utils.apply_to_sample(lambda t: t.to(device), sample)
        logits = model(**sample["net_input"])["logits"].float()
        ids.append(sample["id"].cpu().numpy())
        probs.append(torch.softmax(logits, dim=-1).cpu().numpy())
    order = np.argsort(np.concatenate(ids))
    prob = np.concatenate(probs)[order]
    return {"prob": prob, "prediction": prob.argmax(-1), "target": dataset.targets, "paths": dataset.paths}


def evaluate(
    checkpoint: str,
    fold_dir: str,
    split: str,
    out_dir: str,
    device: str = "auto",
    max_tokens: int = 1_600_000,
    progress: bool = True,
    timelines: int = 0,
) -> Dict[str, object]:
    """Write predictions.tsv, metrics.json and confusion.png (and timelines) under out_dir; return the metrics."""
    dev = resolve_device(device)
    model, task = load_classifier(checkpoint, fold_dir, dev)
    result = predict(model, task, split, dev, max_tokens, progress)
    labels = list(task.labels)
    if timelines:
        plot_timelines(model, task.dataset(split), result, labels, dev, Path(out_dir) / "timelines", timelines)
    return write_results(Path(out_dir), result["paths"], result["target"], result["prob"], labels,
                         {"checkpoint": str(checkpoint), "data": str(fold_dir), "split": split})


def write_results(out: Path, paths: Sequence[str], targets: Sequence[int], prob: np.ndarray, labels: List[str],
                  about: Dict[str, object]) -> Dict[str, object]:
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
        "recall": {l: round(100 * c / t, 2) if t else None for l, (c, t) in zip(labels, counts)},
        "confusion": matrix.tolist(),
    }
    rows = ["utt_id\tlabel\tprediction\t" + "\t".join(f"p_{l}" for l in labels)]
    for path, t, p, pr in zip(paths, targets, prediction, prob):
        rows.append(f"{Path(path).stem}\t{labels[t]}\t{labels[p]}\t" + "\t".join(f"{x:.4f}" for x in pr))
    atomic_write_lines(out / "predictions.tsv", rows)
    split = about.get("split", "")
    plot_confusion(matrix, labels, out / "confusion.png", title=f"{split}: UA {metrics['ua']:.1f}%  WA {metrics['wa']:.1f}%")
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics


@torch.no_grad()
def plot_timelines(model, dataset, result, labels: List[str], device: torch.device, out: Path, count: int) -> None:
    """One picture per utterance (the first `count` of the split): what the model attends to, frame by frame.

    The input is the dataset's (whole, normalised as scored). The demo corpus knows which segments carry the
    emotion (fesa_demo_segments.tsv): they are marked too.
    """
    segments = demo_segments(Path(result["paths"][0]))
    out.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(result["paths"][:count]):
        source = dataset[i]["source"]
        attention = model(source[None].to(device), None)["attention"][0].float().cpu().numpy()
        utt = Path(path).stem
        title = f"{utt}: true {labels[result['target'][i]]}, predicted {labels[result['prediction'][i]]}"
        plot_timeline(source.numpy(), dataset.sample_rate, attention, out / f"{utt}.png", title, segments.get(utt, ()))


def demo_segments(wav: Path) -> Dict[str, list]:
    """The demo corpus' segment truth, found above its wavs; empty for other corpora."""
    from fesa_fairseq.corpora.demo import SEGMENTS_FILE, read_segments

    root = next((p for p in wav.parents if (p / SEGMENTS_FILE).is_file()), None)
    return read_segments(root) if root else {}


def format_confusion(matrix: List[List[int]], labels: List[str]) -> str:
    width = max(6, *(len(l) for l in labels))
    lines = ["true\\pred".ljust(width + 2) + "".join(l.rjust(width) for l in labels)]
    for label, row in zip(labels, matrix):
        lines.append(label.ljust(width + 2) + "".join(str(v).rjust(width) for v in row))
    return "\n".join(lines)

