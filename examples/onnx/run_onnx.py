"""Emotion of a recording from a `fesa export` ONNX file, with onnxruntime alone: no torch, no fairseq.

pip install onnxruntime soundfile scipy
python examples/onnx/run_onnx.py classifier.onnx speech.wav
"""

import json
import sys
from math import gcd

import numpy as np
import onnxruntime
import soundfile as sf
from scipy.signal import resample_poly

session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map
labels, rate, frame_rate = json.loads(meta["labels"]), int(meta["sample_rate"]), float(meta["frame_rate"])

wav, sr = sf.read(sys.argv[2], dtype="float32", always_2d=True)
if not np.isfinite(wav).all():  # NaN samples would score every class NaN and name the first class
    sys.exit(f"{sys.argv[2]} holds NaN or infinite samples: repair or re-export the file")
wav = wav.mean(axis=1)  # mono
if sr != rate:
    g = gcd(sr, rate)
    wav = resample_poly(wav, rate // g, sr // g).astype(np.float32)

logits, posteriors, weights = session.run(None, {"waveform": wav[None]})
probabilities = np.exp(logits[0] - logits[0].max())
probabilities /= probabilities.sum()
print(f"{labels[int(probabilities.argmax())]}  " + "  ".join(f"{c} {p:.3f}" for c, p in zip(labels, probabilities)))
frame_labels = posteriors[0].argmax(axis=1)  # one class per 20 ms frame
for second in range(int(np.ceil(len(frame_labels) / frame_rate))):
    window = frame_labels[int(second * frame_rate) : int((second + 1) * frame_rate)]
    print(f"{second:4d} s  {labels[np.bincount(window).argmax()]}")
