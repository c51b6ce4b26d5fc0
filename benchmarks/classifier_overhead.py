"""What the classifier costs on top of HuBERT, and how much padding the task's batching leaves.

1. Forward+backward of ``hubert_emotion_classifier`` (HuBERT base, attention pooling, linear head, CE loss)
   against fairseq's plain ``HubertModel.extract_features`` forward+backward of the same encoder on the same
   IEMOCAP-like batch. Both in eval mode (no dropout, no masking) with the CNN front end frozen, as in the
   fine-tuning config, so the ratio is the pooling + head + loss overhead alone.
2. The padding ratio (real / padded samples) of the task's length-sorted batches over 5,531 IEMOCAP-like
   utterances, against batches of a plain shuffle, for training (6 s crops) and for scoring (whole utterances).

    .venv/bin/python benchmarks/classifier_overhead.py [--batch 6] [--repeats 3] [--device auto] [--model tiny] [--small]
"""

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from fairseq import checkpoint_utils
from fairseq.data import data_utils
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
import fesa_fairseq  # noqa: E402,F401
from fesa_fairseq.data.emotion_audio_dataset import length_sorted_order  # noqa: E402
from fesa_fairseq.models.hubert_emotion_classifier import HubertEmotionClassifierConfig  # noqa: E402
from fesa_fairseq.tasks.speech_emotion_classification import SpeechEmotionClassificationConfig, SpeechEmotionClassificationTask  # noqa: E402

from common import SR, iemocap_like_seconds, parse_args, random_hubert  # noqa: E402

SMALL = dict(model="tiny", batch=2, repeats=1, utterances=500)  # --small


def build_models(work: Path, device: torch.device, model: str):
    ckpt = random_hubert(work / "hubert.pt", model)
    (work / "dict.emo.txt").write_text("neu 1\nhap 1\nang 1\nsad 1\n")
    task = SpeechEmotionClassificationTask(OmegaConf.structured(SpeechEmotionClassificationConfig(data=str(work), train_subset="train", seed=1)))
    cfg = OmegaConf.structured(
        HubertEmotionClassifierConfig(
            _name="hubert_emotion_classifier", w2v_path=str(ckpt), data=str(work), normalize=False, apply_mask=False, feature_grad_mult=0.0
        )
    )
    classifier = task.build_model(cfg).to(device).eval()
    (plain,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(ckpt)], arg_overrides={"feature_grad_mult": 0.0})
    return classifier, plain.to(device).eval()


def make_batch(batch: int, seed: int, device: torch.device):
    lengths = (iemocap_like_seconds(batch, seed) * SR).astype(int)
    source = torch.randn(batch, lengths.max(), generator=torch.Generator().manual_seed(seed)) * 0.1
    padding = torch.arange(lengths.max())[None, :] >= torch.from_numpy(lengths)[:, None]
    source = source.masked_fill(padding, 0.0)
    return source.to(device), padding.to(device), torch.arange(batch, device=device) % 4, lengths


def step_classifier(model, source, padding, target) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(source, padding)["logits"], target).backward()


def step_plain(model, source, padding, target) -> None:
    model.zero_grad(set_to_none=True)
    features, _ = model.extract_features(source, padding_mask=padding, mask=False)
    features.float().pow(2).mean().backward()


def timed(fn, device: torch.device, *args) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def padding_ratio(sizes: np.ndarray, order: np.ndarray, max_tokens: int) -> float:
    batches = data_utils.batch_by_size(order, num_tokens_fn=None, num_tokens_vec=sizes[order], max_tokens=max_tokens)
    real = sum(int(sizes[b].sum()) for b in batches)
    padded = sum(len(b) * int(sizes[b].max()) for b in batches)
    return real / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=6, help="utterances per batch (IEMOCAP-like lengths)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", choices=["base", "tiny"], default="base", help="a random HuBERT base, or the tiny HuBERT")
    parser.add_argument("--utterances", type=int, default=5531, help="IEMOCAP-like utterances the padding ratio is measured over")
    args = parse_args(parser, SMALL)
    logging.basicConfig(level=logging.WARNING, force=True)  # importing fairseq leaves the root logger at DEBUG
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device))

    with tempfile.TemporaryDirectory() as tmp:
        classifier, plain = build_models(Path(tmp), device, args.model)
    n_params = sum(p.numel() for p in plain.parameters())
    source, padding, target, lengths = make_batch(args.batch, seed=1, device=device)
    print(f"device {device}, torch threads {torch.get_num_threads()}, HuBERT {args.model} {n_params / 1e6:.1f} M parameters")
    print(f"batch: {args.batch} utterances, {lengths.sum() / SR:.1f} s of audio, longest {lengths.max() / SR:.1f} s")
    step_classifier(classifier, source, padding, target)  # warm-up
    step_plain(plain, source, padding, target)
    times = {"classifier": [], "plain": []}
    for _ in range(args.repeats):  # interleaved, so that machine noise hits both alike
        times["classifier"].append(timed(step_classifier, device, classifier, source, padding, target))
        times["plain"].append(timed(step_plain, device, plain, source, padding, target))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"forward+backward, median of {args.repeats}: hubert_emotion_classifier {med['classifier']:.3f} s, "
        f"HubertModel.extract_features {med['plain']:.3f} s"
    )
    print(f"classifier overhead ratio: {med['classifier'] / med['plain']:.3f}")
    print(f"real-time factor of a training step: {med['classifier'] / (lengths.sum() / SR):.3f}")

    padding_ratios(args.utterances)


def padding_ratios(n: int) -> None:
    seconds = iemocap_like_seconds(n, seed=0)
    whole = (seconds * SR).astype(np.int64)
    cropped = np.minimum(whole, 96000)
    targets = np.random.default_rng(0).integers(0, 4, len(whole))
    rng = np.random.default_rng(0)
    print(f"padding ratio (real / padded samples) over {n:,} IEMOCAP-like utterances ({seconds.sum() / 3600:.1f} h):")
    for name, sizes, max_tokens in (
        ("train, 6 s crops, 4,608,000 samples/batch", cropped, 4_608_000),
        ("scoring, whole utterances, 1,600,000 samples/batch", whole, 1_600_000),
    ):
        sorted_ratio = padding_ratio(sizes, length_sorted_order(sizes, targets, rng), max_tokens)
        random_ratio = padding_ratio(sizes, rng.permutation(len(sizes)), max_tokens)
        print(f"  {name}: length-sorted {sorted_ratio:.3f}, shuffled {random_ratio:.3f}")


if __name__ == "__main__":
    main()
