"""A fine-tuned classifier as a folder transformers loads (``fesa export --hf``).

Mean pooling straight into the output layer is exactly transformers' ``HubertForSequenceClassification`` (its
projector set to the identity: the mean of projected frames is the projection of their mean), so the folder needs
no code of ours and ``pipeline("audio-classification")`` takes it. Attention pooling, or a tanh projection, has no
transformers class: the folder then carries ``modeling_fesa.py`` (torch and transformers only), loaded with
``trust_remote_code=True``, which also returns the frame posteriors and pooling weights ``fesa predict`` gives.
Either way the folder is checked with transformers against the model on noise of several lengths before it
replaces anything, and it comes with a model card (README.md) holding the fold's scores.
"""

import logging
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from omegaconf import OmegaConf

from fesa.errors import FesaError
from fesa.files import atomic_write_json, atomic_write_text, atomic_write_with, check_output_dir, staged_dir
from fesa.huggingface.config import transformers_settings
from fesa.huggingface.model_card import find_scores, model_card, source_name
from fesa.huggingface.weights import to_transformers
from fesa.inference.onnx_export import CHECK_SECONDS, OUTPUTS, frame_expectations
from fesa.inference.recognizer import EmotionRecognizer
from fesa_fairseq.data.waveform import prepare_waveform

logger = logging.getLogger(__name__)

MARKER = "fesa_export.json"  # what makes a folder replaceable by another fesa export --hf
REMOTE_CODE = Path(__file__).with_name("modeling_fesa.py")
REMOTE_CLASS = "FesaHubertForEmotionClassification"
TOLERANCE = 1e-4  # max |logit difference|, transformers vs the fairseq model


def is_plain(model) -> bool:
    """Mean pooling straight into the output layer: transformers' own HubertForSequenceClassification."""
    return str(model.cfg.pooling) == "mean" and model.cfg.projection_dim == 0


def hf_config(model, labels, plain: bool) -> Dict[str, Any]:
    cfg = model.cfg
    encoder = OmegaConf.to_container(cfg.w2v_args.model, resolve=True)
    config = transformers_settings(encoder, cfg.mask_prob if cfg.apply_mask else 0.0, cfg.mask_length)
    config.update(
        hidden_dropout=cfg.dropout,
        attention_dropout=cfg.attention_dropout,
        activation_dropout=cfg.activation_dropout,
        feat_proj_dropout=cfg.dropout_input,
        layerdrop=cfg.layerdrop,
        id2label={str(i): label for i, label in enumerate(labels)},
        label2id={label: i for i, label in enumerate(labels)},
    )
    if plain:
        plain_head = {"classifier_proj_size": config["hidden_size"], "use_weighted_layer_sum": False}
        return {**config, "architectures": ["HubertForSequenceClassification"], **plain_head}
    return {
        **config,
        "architectures": [REMOTE_CLASS],
        "auto_map": {"AutoModelForAudioClassification": f"modeling_fesa.{REMOTE_CLASS}"},
        "fesa_pooling": str(cfg.pooling),
        "fesa_projection_dim": cfg.projection_dim,
        "fesa_classifier_dropout": cfg.classifier_dropout,
    }


def hf_weights(model, config: Dict[str, Any], plain: bool) -> Dict[str, torch.Tensor]:
    encoder, unknown = to_transformers(model.encoder.w2v_model.state_dict())
    if unknown:
        raise FesaError(f"the classifier's encoder holds tensors transformers' HuBERT has no place for: {', '.join(unknown[:5])}")
    dim = config["hidden_size"]
    if "feature_projection.projection.weight" not in encoder:  # fairseq skips the projection when the sizes agree
        encoder["feature_projection.projection.weight"], encoder["feature_projection.projection.bias"] = torch.eye(dim), torch.zeros(dim)
    if config["mask_time_prob"] <= 0:  # transformers makes masked_spec_embed only for a model that masks
        encoder.pop("masked_spec_embed", None)
    weights = {f"hubert.{k}": v for k, v in encoder.items()}
    if plain:
        out = model.head[-1]
        weights.update({"projector.weight": torch.eye(dim), "projector.bias": torch.zeros(dim)})
        weights.update({"classifier.weight": out.weight, "classifier.bias": out.bias})
    else:
        weights.update({f"pooling.{k}": v for k, v in model.pooling.state_dict().items()})
        weights.update({f"head.{k}": v for k, v in model.head.state_dict().items()})
    return {k: v.detach().float().contiguous().clone() for k, v in weights.items()}


def feature_extractor(normalize: bool, layer_norm: bool, sample_rate: int) -> Dict[str, Any]:
    """preprocessor_config.json: the waveform as the model was trained on it; an attention mask only for a
    layer-normed front end (a group-normed one sees padding, as fairseq's does)."""
    return {
        "feature_extractor_type": "Wav2Vec2FeatureExtractor",
        "feature_size": 1,
        "sampling_rate": int(sample_rate),
        "padding_value": 0.0,
        "padding_side": "right",
        "do_normalize": bool(normalize),
        "return_attention_mask": bool(layer_norm),
    }


def compare_with_transformers(folder: Path, recognizer: EmotionRecognizer, plain: bool, seed: int = 0) -> Dict[str, Any]:
    """Max |difference| of the logits (and, with the remote code, the frame posteriors and pooling weights) of
    transformers' model of ``folder`` against the classifier, on noise of several lengths."""
    from transformers import AutoModelForAudioClassification

    hf = AutoModelForAudioClassification.from_pretrained(str(folder), trust_remote_code=not plain, attn_implementation="eager").eval()
    rng = np.random.default_rng(seed)
    worst = dict.fromkeys(OUTPUTS if not plain else OUTPUTS[:1], 0.0)
    same = 0
    lengths = [int(s * recognizer.sample_rate) for s in CHECK_SECONDS]
    for n in lengths:
        x = prepare_waveform(torch.from_numpy((0.1 * rng.standard_normal((1, n))).astype(np.float32)), recognizer.normalize)
        with torch.no_grad():
            expected = frame_expectations(recognizer.model, x, recognizer.model(x, None))
            got = hf(x)
        for name in worst:
            worst[name] = max(worst[name], float(np.abs(getattr(got, name).numpy() - expected[name]).max()))
        same += int(got.logits.argmax() == expected["logits"].argmax())
    return {"lengths": lengths, **{f"max_{k}_difference": v for k, v in worst.items()}, "same_label": f"{same}/{len(lengths)}"}


def write_folder(folder: Path, config: Dict[str, Any], weights: Dict[str, torch.Tensor], extractor: Dict[str, Any], plain: bool) -> None:
    from safetensors.torch import save

    atomic_write_json(folder / "config.json", config)
    atomic_write_with(folder / "model.safetensors", lambda f: f.write(save(weights, metadata={"format": "pt"})))
    atomic_write_json(folder / "preprocessor_config.json", extractor)
    if not plain:
        shutil.copyfile(REMOTE_CODE, folder / REMOTE_CODE.name)


def check_output(checkpoint: str, out: Path, overwrite: bool) -> bool:
    """May OUT be written (before anything is read)? Never the checkpoint's folder nor inside the checkpoint; an
    existing folder only with ``overwrite`` and only if an earlier export wrote it. True: it will be replaced."""
    return check_output_dir(out, overwrite, MARKER, [checkpoint])


def export_hf(checkpoint: str, out: Path, overwrite: bool = False, metrics: Optional[Path] = None, seed: int = 0) -> Dict[str, Any]:
    """Write the folder OUT (replacing one an earlier export wrote, with ``overwrite``) once transformers' logits
    agree with the classifier's; return the check."""
    check_output(checkpoint, out, overwrite)  # before the model is loaded
    recognizer = EmotionRecognizer.from_checkpoint(checkpoint, device="cpu")
    model, plain = recognizer.model, is_plain(recognizer.model)
    config = hf_config(model, recognizer.labels, plain)
    weights = hf_weights(model, config, plain)
    extractor = feature_extractor(recognizer.normalize, config["feat_extract_norm"] == "layer", recognizer.sample_rate)
    scores = find_scores(Path(checkpoint), metrics)
    with staged_dir(out, overwrite=overwrite, marker=MARKER, inputs=[checkpoint]) as staging:
        write_folder(staging, config, weights, extractor, plain)
        check = compare_with_transformers(staging, recognizer, plain, seed)
        if check["max_logits_difference"] > TOLERANCE:
            raise FesaError(
                f"transformers' logits differ from the classifier's by {check['max_logits_difference']:.2g} (> {TOLERANCE:g}) on "
                f"{check['lengths']} samples: nothing was written to {out}"
            )
        kind = "HubertForSequenceClassification" if plain else f"{REMOTE_CLASS} (modeling_fesa.py, trust_remote_code=True)"
        card = model_card(recognizer.labels, kind, str(model.cfg.pooling), scores, source_name(Path(checkpoint)), str(out))
        atomic_write_text(staging / "README.md", card)
        atomic_write_json(staging / MARKER, {"checkpoint": str(checkpoint), "class": kind, "check": check, "scores": scores})
    logger.info("exported %s to %s as %s (max |logit difference| %.2g)", checkpoint, out, kind, check["max_logits_difference"])
    return {**check, "class": kind, "labels": recognizer.labels, "scores": scores, "out": str(out)}
