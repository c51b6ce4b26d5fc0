"""Settings of a transformers HuBERT / wav2vec 2.0 encoder (its config.json) and of fairseq's ``HubertConfig``.

Only what changes the numbers is mapped; a setting fairseq's HuBERT cannot reproduce is refused by name, never
dropped. Dropouts and masking are training choices the plugin's yaml makes, so they are not carried over.
"""

import ast
from typing import Any, Dict, List, Tuple

from fesa_fairseq.errors import FesaError

MODEL_TYPES = ("hubert", "wav2vec2")
# Their encoder is taken, their heads are left out (a classifier's encoder can seed TAPT like any other).
ARCHITECTURES = (
    "HubertModel",
    "HubertForCTC",
    "HubertForSequenceClassification",
    "Wav2Vec2Model",
    "Wav2Vec2ForCTC",
    "Wav2Vec2ForPreTraining",
    "Wav2Vec2ForSequenceClassification",
    "FesaHubertForEmotionClassification",
)
# transformers activation name -> fairseq's (utils.get_activation_fn); gelu_new is the tanh approximation.
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_accurate", "relu": "relu", "tanh": "tanh", "linear": "linear", "swish": "swish", "silu": "swish"}
TRANSFORMERS_ACTIVATIONS = {"gelu": "gelu", "gelu_accurate": "gelu_new", "relu": "relu", "tanh": "tanh", "linear": "linear", "swish": "silu"}
FAIRSEQ_LAYER_NORM_EPS = 1e-5  # fairseq's LayerNorm and Fp32GroupNorm use torch's default


def _refuse(path: str, field: str, value: Any, why: str) -> FesaError:
    return FesaError(f"{path}: {field}={value!r}: {why}; fairseq's HuBERT cannot hold this model, so nothing was written")


def check_importable(hf: Dict[str, Any], path: str) -> None:
    """Every setting whose value fairseq's HuBERT cannot reproduce, refused by name (the first one found)."""
    if "num_buckets" in hf or "max_bucket_distance" in hf:
        why = "relative position buckets (WavLM); fairseq's HuBERT has convolutional positions only"
        raise _refuse(path, "num_buckets", hf.get("num_buckets"), why)
    if hf.get("model_type") not in MODEL_TYPES:
        raise _refuse(path, "model_type", hf.get("model_type"), f"only {' and '.join(MODEL_TYPES)} encoders can be imported")
    checks = [
        ("feat_extract_norm", hf.get("feat_extract_norm", "group") in ("group", "layer"), "another feature extractor (fairseq: group or layer norm)"),
        ("feat_extract_activation", hf.get("feat_extract_activation", "gelu") == "gelu", "fairseq's feature extractor uses GELU"),
        ("feat_proj_layer_norm", hf.get("feat_proj_layer_norm", True), "fairseq's HuBERT always normalises the features before projecting them"),
        ("conv_pos_batch_norm", not hf.get("conv_pos_batch_norm", False), "fairseq's positional convolution is weight-normed, not batch-normed"),
        ("hidden_act", hf.get("hidden_act", "gelu") in ACTIVATIONS, f"fairseq knows {', '.join(sorted(ACTIVATIONS))}"),
        ("layer_norm_eps", abs(float(hf.get("layer_norm_eps", 1e-5)) - FAIRSEQ_LAYER_NORM_EPS) < 1e-12, "fairseq's layer norms use 1e-05"),
        ("add_adapter", not hf.get("add_adapter", False), "fairseq's HuBERT has no output adapter"),
        ("adapter_attn_dim", hf.get("adapter_attn_dim") is None, "fairseq's HuBERT has no attention adapters"),
    ]
    for field, ok, why in checks:
        if not ok:
            raise _refuse(path, field, hf.get(field), why)
    if not (len(hf["conv_dim"]) == len(hf["conv_kernel"]) == len(hf["conv_stride"])):
        raise FesaError(f"{path}: conv_dim, conv_kernel and conv_stride have different lengths: the config is damaged")


def conv_layers(dims: List[int], kernels: List[int], strides: List[int]) -> str:
    """fairseq's ``conv_feature_layers`` string (a Python list of (dim, kernel, stride))."""
    return "[" + ", ".join(f"({d},{k},{s})" for d, k, s in zip(dims, kernels, strides)) + "]"


def conv_spec(text: str) -> List[Tuple[int, int, int]]:
    """fairseq's ``conv_feature_layers`` ("[(512,10,5)] + [(512,3,2)] * 4") read without eval: lists of int
    tuples joined by + and repeated by *, nothing else (the string comes from a checkpoint)."""

    def value(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Mult) and not (isinstance(right, int) and 0 <= right <= 100):
                raise FesaError(f"conv_feature_layers={text!r}: a list repeated {right!r} times")
            return left + right if isinstance(node.op, ast.Add) else left * right
        raise FesaError(f"conv_feature_layers={text!r} is not a list of (dim, kernel, stride) tuples")

    layers = value(ast.parse(text, mode="eval").body)
    if not isinstance(layers, list) or not all(isinstance(t, tuple) and len(t) == 3 for t in layers):
        raise FesaError(f"conv_feature_layers={text!r} is not a list of (dim, kernel, stride) tuples")
    return layers


def frame_rate(strides: List[int], sample_rate: int = 16000) -> float:
    hop = 1
    for s in strides:
        hop *= int(s)
    return sample_rate / hop


def fairseq_model_settings(hf: Dict[str, Any], path: str) -> Dict[str, Any]:
    """fairseq ``HubertConfig`` fields of a transformers encoder config (checked first)."""
    check_importable(hf, path)
    return {
        "extractor_mode": "layer_norm" if hf.get("feat_extract_norm", "group") == "layer" else "default",
        "conv_feature_layers": conv_layers(hf["conv_dim"], hf["conv_kernel"], hf["conv_stride"]),
        "conv_bias": bool(hf.get("conv_bias", False)),
        "encoder_layers": int(hf["num_hidden_layers"]),
        "encoder_embed_dim": int(hf["hidden_size"]),
        "encoder_ffn_embed_dim": int(hf["intermediate_size"]),
        "encoder_attention_heads": int(hf["num_attention_heads"]),
        "activation_fn": ACTIVATIONS[hf.get("hidden_act", "gelu")],
        "layer_norm_first": bool(hf.get("do_stable_layer_norm", False)),
        "conv_pos": int(hf["num_conv_pos_embeddings"]),
        "conv_pos_groups": int(hf["num_conv_pos_embedding_groups"]),
        "label_rate": frame_rate(hf["conv_stride"]),
    }


def transformers_settings(model: Dict[str, Any], mask_prob: float, mask_length: int) -> Dict[str, Any]:
    """transformers ``HubertConfig`` fields of a fairseq HuBERT's model settings (the inverse of the above);
    SpecAugment as the classifier was fine-tuned with."""
    if model.get("activation_fn", "gelu") not in TRANSFORMERS_ACTIVATIONS:
        raise FesaError(f"activation_fn={model.get('activation_fn')!r} has no transformers name")
    layers = conv_spec(model["conv_feature_layers"])
    return {
        "model_type": "hubert",
        "feat_extract_norm": "layer" if model.get("extractor_mode") == "layer_norm" else "group",
        "feat_extract_activation": "gelu",
        "feat_proj_layer_norm": True,
        "conv_dim": [d for d, _, _ in layers],
        "conv_kernel": [k for _, k, _ in layers],
        "conv_stride": [s for _, _, s in layers],
        "conv_bias": bool(model.get("conv_bias", False)),
        "num_feat_extract_layers": len(layers),
        "num_hidden_layers": int(model["encoder_layers"]),
        "hidden_size": int(model["encoder_embed_dim"]),
        "intermediate_size": int(model["encoder_ffn_embed_dim"]),
        "num_attention_heads": int(model["encoder_attention_heads"]),
        "hidden_act": TRANSFORMERS_ACTIVATIONS[model.get("activation_fn", "gelu")],
        "do_stable_layer_norm": bool(model.get("layer_norm_first", False)),
        "num_conv_pos_embeddings": int(model.get("conv_pos", 128)),
        "num_conv_pos_embedding_groups": int(model.get("conv_pos_groups", 16)),
        "layer_norm_eps": FAIRSEQ_LAYER_NORM_EPS,
        "mask_time_prob": float(mask_prob),
        "mask_time_length": int(mask_length),
    }
