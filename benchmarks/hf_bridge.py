"""How close the transformers bridge stays to fairseq, on a base-sized encoder and on a demo classifier.

    python benchmarks/hf_bridge.py --work /tmp/hfb [--classifier CKPT --fold MANIFESTS/foldK] [--model tiny] [--small]

In: a random transformers HubertModel of HuBERT base's shape (12 layers of 768, transformers' defaults) saved as a
snapshot, then ``fesa import-hf``: wall time and the largest difference of every layer's output against
transformers on 3.7 s of noise. Out (with --classifier, a fine-tuned classifier with mean pooling, and its fold):
``fesa export --hf``, then ``pipeline("audio-classification")`` on the fold's first five test utterances against
``fesa predict``'s labels (EmotionRecognizer), with the largest logit difference on them.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

import fesa_fairseq  # noqa: F401  (lets torch >= 2.6 load fairseq checkpoints, releases and imports alike)

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/common.py, for scripts run from anywhere
from common import parse_args  # noqa: E402

SMALL = dict(model="tiny")  # --small
# transformers' HubertConfig arguments of a 2-layer, 64-dim encoder (a narrower CNN, so that both sides project)
TINY_HF = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=128,
    conv_dim=(32,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)


def fesa(*args) -> str:
    res = subprocess.run([str(Path(sys.executable).parent / "fesa"), *map(str, args)], capture_output=True, text=True)
    if res.returncode:
        sys.exit(res.stderr[-3000:])
    return res.stdout


def imported(work: Path, size: str) -> None:
    from fairseq import checkpoint_utils
    from transformers import HubertConfig, HubertModel

    torch.manual_seed(0)
    model = HubertModel(HubertConfig(**(TINY_HF if size == "tiny" else {}))).eval()
    model.save_pretrained(str(work / "snapshot"))
    start = time.perf_counter()
    print(fesa("import-hf", work / "snapshot", "--out", work / "base.pt", "--overwrite").strip())
    print(
        f"import-hf, HuBERT {size} shape ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters): {time.perf_counter() - start:.1f} s"
    )
    (ours,), _, _ = checkpoint_utils.load_model_ensemble_and_task([str(work / "base.pt")])
    x = 0.1 * torch.randn(1, 59_200, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = model(x, output_hidden_states=True).hidden_states[1:]
        diffs = [float((ours.eval().extract_features(x, output_layer=i + 1)[0] - h).abs().max()) for i, h in enumerate(theirs)]
    per_layer = ", ".join(f"{d:.1g}" for d in diffs)
    print(f"stock fairseq loader vs transformers, 3.7 s of noise: max |layer difference| {max(diffs):.2g} (per layer: {per_layer})")


def exported(work: Path, classifier: Path, fold: Path) -> None:
    from transformers import AutoModelForAudioClassification, pipeline

    from fesa.inference.recognizer import EmotionRecognizer

    print(fesa("export", classifier, "--hf", work / "hf", "--overwrite").strip())
    classify = pipeline("audio-classification", model=str(work / "hf"))
    hf = AutoModelForAudioClassification.from_pretrained(str(work / "hf")).eval()
    recognizer = EmotionRecognizer.from_checkpoint(classifier, device="cpu")
    rows = (fold / "test.tsv").read_text().splitlines()
    print("| utterance | truth | fesa predict | pipeline (score) | max abs logit difference |\n|---|---|---|---|---|")
    truth = (fold / "test.emo").read_text().split()
    for row, label in list(zip(rows[1:], truth))[:5]:
        audio = sf.read(str(Path(rows[0]) / row.split("\t")[0]), dtype="float32")[0]
        ours = recognizer.predict(audio, 16000)
        top = classify({"raw": audio, "sampling_rate": 16000})[0]
        with torch.no_grad():
            diff = float((hf(torch.from_numpy(audio)[None]).logits - recognizer.model(torch.from_numpy(audio)[None], None)["logits"]).abs().max())
        name = Path(row.split("\t")[0]).stem
        print(f"| {name} | {label} | {ours.label} ({np.max(ours.probabilities):.3f}) | {top['label']} ({top['score']:.3f}) | {diff:.2g} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--classifier", type=Path, help="a fine-tuned classifier with mean pooling")
    p.add_argument("--fold", type=Path, help="its fold folder (test.tsv, test.emo)")
    p.add_argument("--model", choices=["base", "tiny"], default="base", help="the random transformers model imported: HuBERT base's shape, or tiny")
    args = parse_args(p, SMALL)
    args.work.mkdir(parents=True, exist_ok=True)
    imported(args.work, args.model)
    if args.classifier:
        exported(args.work, args.classifier, args.fold)


if __name__ == "__main__":
    main()
