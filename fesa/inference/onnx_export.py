"""A fine-tuned classifier as one ONNX file: waveform in; logits, frame posteriors and pooling weights out.

The graph takes ``waveform`` (1 × samples, float32, 16 kHz mono, at least 400 samples; the time axis is dynamic)
and gives ``logits`` (1 × classes), ``frame_posteriors`` (1 × frames × classes, 50 frames per second) and
``pooling_weights`` (1 × frames, summing to 1). The task's waveform normalisation is part of the graph, so a
caller feeds the samples as read. The class names, sample rate and frame rate are in the file's metadata
(``labels`` as JSON), so onnxruntime alone can run it (README: ONNX).

fairseq's encoder pads its input to an even frame count (``required_seq_len_multiple``, a speed-up for fp16 on
GPUs; the padded frames are masked). Traced with a dynamic length, that branch is frozen for one parity and
breaks the other, so the exported copy uses a multiple of 1: the same outputs for every length.
"""

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from fesa.checkpoints import load_model
from fesa.errors import FesaError
from fesa.files import check_output_file
from fesa.inference.recognizer import EmotionRecognizer
from fesa_fairseq.data.waveform import prepare_waveform

logger = logging.getLogger(__name__)

OUTPUTS = ("logits", "frame_posteriors", "pooling_weights")
CHECK_SECONDS = (0.5, 1.37, 3.0, 7.01)  # odd and even frame counts, short and long
TOLERANCE = 1e-3  # max |logit difference| of the fp32 graph against PyTorch


class OnnxClassifier(nn.Module):
    """The classifier's forward for one recording, with the per-frame outputs beside the utterance logits."""

    def __init__(self, model: nn.Module, normalize: bool) -> None:
        """``model``: a copy of its own (its encoder's padding multiple is set to 1)."""
        super().__init__()
        self.model = model.eval()
        self.model.encoder.w2v_model.encoder.required_seq_len_multiple = 1
        self.normalize = normalize
        self.eval()  # torch.onnx.export looks at the wrapper's own flag, not only its children's

    def forward(self, waveform: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.normalize:  # F.layer_norm over the whole waveform, written out so the length stays symbolic
            mean = waveform.mean(dim=-1, keepdim=True)
            var = ((waveform - mean) ** 2).mean(dim=-1, keepdim=True)
            waveform = (waveform - mean) / torch.sqrt(var + 1e-5)
        frames = self.model.encoder(waveform, None, tbc=False)["encoder_out"]
        pooled, weights = self.model.pooling(frames, None)
        return self.model.head(pooled), torch.softmax(self.model.head(frames), dim=-1), weights


def onnx_outputs(checkpoint: str, out: Path, int8: bool, overwrite: bool) -> Dict[str, Path]:
    """The files :func:`export_onnx` writes, each checked before anything is read: a name ending in .onnx, never
    the checkpoint (nor inside it), an existing file replaced only with ``overwrite``."""
    out = Path(out)
    if not out.name.endswith(".onnx"):
        raise FesaError(f"--onnx {out}: give a file name ending in .onnx")
    files = {"onnx": out, **({"int8": out.with_name(f"{out.stem}.int8.onnx")} if int8 else {})}
    for path in files.values():
        check_output_file(path, overwrite, inputs=[checkpoint])
    return files


def export_onnx(checkpoint: str, out: Path, int8: bool = False, overwrite: bool = False, seed: int = 0) -> Dict[str, object]:
    """Write OUT (and OUT's int8 twin with ``int8``) after checking the fp32 graph against PyTorch; return the check."""
    import onnx  # the optional [export] extra

    files = onnx_outputs(checkpoint, out, int8, overwrite)
    reference = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu")  # classes, preparation, geometry
    wrapper = OnnxClassifier(load_model(checkpoint)[0], reference.normalize)  # weight-normed modules cannot be deep-copied
    g, labels = reference.geometry, reference.labels
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / out.name
        samples = torch.export.Dim("samples", min=g.receptive_field, max=g.sample_rate * 3600)
        example = torch.zeros(1, g.sample_rate * 2)
        with torch.no_grad():
            program = torch.onnx.export(
                wrapper,
                (example,),
                input_names=["waveform"],
                output_names=list(OUTPUTS),
                dynamic_shapes=({1: samples},),
                dynamo=True,
                verbose=False,  # its progress lines would go to stdout, which holds the command's result
            )
        program.save(str(staged))
        graph = onnx.load(str(staged))
        metadata = {"labels": json.dumps(labels), "sample_rate": str(g.sample_rate), "frame_rate": str(g.frame_rate), "source": Path(checkpoint).name}
        onnx.helper.set_model_props(graph, metadata)
        onnx.save(graph, str(staged))
        check = compare_with_pytorch(reference, staged, seed)
        if check["max_logit_difference"] > TOLERANCE:
            raise FesaError(
                f"the exported graph's logits differ from PyTorch's by {check['max_logit_difference']:.2g} (> {TOLERANCE:g}) "
                f"on {check['lengths']} samples: nothing was written to {out}"
            )
        if int8:
            quantize_int8(staged, Path(tmp) / files["int8"].name)
            check["int8"] = compare_with_pytorch(reference, Path(tmp) / files["int8"].name, seed)
        for path in files.values():  # the set goes in together, each by rename
            os.replace(Path(tmp) / path.name, path)
    logger.info("exported %s to %s (max |logit difference| vs PyTorch %.2g)", checkpoint, out, check["max_logit_difference"])
    return {**check, "labels": labels, "files": {k: str(v) for k, v in files.items()}}


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic quantisation: int8 weights of the MatMul layers, activations quantised at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])


def compare_with_pytorch(reference: EmotionRecognizer, path: Path, seed: int, seconds: Sequence[float] = CHECK_SECONDS) -> Dict[str, object]:
    """Max absolute difference of every output, over noise inputs of several lengths, ONNX file vs the model."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    model = reference.model
    lengths = [int(s * reference.sample_rate) for s in seconds]
    worst = dict.fromkeys(OUTPUTS, 0.0)
    same_label = 0
    for n in lengths:
        wav = (0.1 * rng.standard_normal((1, n))).astype(np.float32)
        with torch.no_grad():
            x = prepare_waveform(torch.from_numpy(wav), reference.normalize)
            expected = frame_expectations(model, x, model(x, None))
        got = dict(zip(OUTPUTS, session.run(list(OUTPUTS), {"waveform": wav})))
        for name in OUTPUTS:
            if got[name].shape != expected[name].shape:
                raise FesaError(f"{path}: {name} has shape {got[name].shape} for {n} samples, PyTorch gives {expected[name].shape}")
            worst[name] = max(worst[name], float(np.abs(got[name] - expected[name]).max()))
        same_label += int(got["logits"].argmax() == expected["logits"].argmax())
    return {
        "lengths": lengths,
        "max_logit_difference": worst["logits"],
        "max_posterior_difference": worst["frame_posteriors"],
        "max_weight_difference": worst["pooling_weights"],
        "same_label": f"{same_label}/{len(lengths)}",
    }


def frame_expectations(model: nn.Module, x: torch.Tensor, reference: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
    """What the graph must give, from the model's own forward (logits, weights) and frame_outputs (posteriors)."""
    frames = model.frame_outputs(x, None)
    return {
        "logits": reference["logits"].numpy(),
        "frame_posteriors": torch.softmax(frames["frame_logits"], dim=-1).numpy(),
        "pooling_weights": reference["attention"].numpy(),
    }
