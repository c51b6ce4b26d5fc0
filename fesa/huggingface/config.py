"""Settings of a transformers HuBERT / wav2vec 2.0 encoder (its config.json) and of fairseq's ``HubertConfig``.

Only what changes the numbers is mapped; a setting fairseq's HuBERT cannot reproduce is refused by name, never
dropped. Dropouts and masking are training choices the plugin's yaml makes, so they are not carried over.
"""

import ast
import math
from typing import Any, Callable, Dict, List, Tuple

from fesa.errors import FesaError

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


REQUIRED = object()  # a field every transformers config.json of these models holds (save_pretrained writes them all)

# Every config.json field the import reads: (kind, default), transformers' defaults; JSON null reads as the default.
SETTINGS: Dict[str, Tuple[str, Any]] = {
    "model_type": ("text", REQUIRED),
    "architectures": ("texts", []),
    "feat_extract_norm": ("text", "group"),
    "feat_extract_activation": ("text", "gelu"),
    "feat_proj_layer_norm": ("flag", True),
    "conv_pos_batch_norm": ("flag", False),
    "hidden_act": ("text", "gelu"),
    "layer_norm_eps": ("number", 1e-5),
    "add_adapter": ("flag", False),
    "adapter_attn_dim": ("count", None),
    "conv_dim": ("counts", REQUIRED),
    "conv_kernel": ("counts", REQUIRED),
    "conv_stride": ("counts", REQUIRED),
    "num_feat_extract_layers": ("count", None),
    "conv_bias": ("flag", False),
    "num_hidden_layers": ("count", REQUIRED),
    "hidden_size": ("count", REQUIRED),
    "intermediate_size": ("count", REQUIRED),
    "num_attention_heads": ("count", REQUIRED),
    "do_stable_layer_norm": ("flag", False),
    "num_conv_pos_embeddings": ("count", REQUIRED),
    "num_conv_pos_embedding_groups": ("count", REQUIRED),
}


def _count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


KINDS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "text": (lambda v: isinstance(v, str), "a string"),
    "texts": (lambda v: isinstance(v, list) and all(isinstance(e, str) for e in v), "a list of strings"),
    "flag": (lambda v: isinstance(v, bool), "true or false"),
    "number": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), "a finite number"),
    "count": (_count, "a whole number above 0"),
    "counts": (lambda v: isinstance(v, list) and bool(v) and all(_count(e) for e in v), "a non-empty list of whole numbers above 0"),
}


def setting(hf: Dict[str, Any], path: str, name: str) -> Any:
    """The one typed getter: config.json's ``name`` as its kind, or its default, or one line naming the field."""
    kind, default = SETTINGS[name]
    ok, expected = KINDS[kind]
    value = hf.get(name)
    if value is None:
        if default is REQUIRED:
            raise FesaError(f"{path}: {name} is missing (it must be {expected}): not a complete transformers config, so nothing was written")
        return default
    if not ok(value):
        raise FesaError(f"{path}: {name}={value!r} is not {expected}: the config is damaged, so nothing was written")
    return value


def _refuse(path: str, field: str, value: Any, why: str) -> FesaError:
    return FesaError(f"{path}: {field}={value!r}: {why}; fairseq's HuBERT cannot hold this model, so nothing was written")


def read_settings(hf: Any, path: str) -> Dict[str, Any]:
    """Every field of a config.json the import uses, typed, and checked to be one fairseq's HuBERT reproduces."""
    if not isinstance(hf, dict):
        raise FesaError(f"{path} is not a JSON object of settings: not a transformers config")
    if "num_buckets" in hf or "max_bucket_distance" in hf:
        why = "relative position buckets (WavLM); fairseq's HuBERT has convolutional positions only"
        raise _refuse(path, "num_buckets", hf.get("num_buckets"), why)
    if setting(hf, path, "model_type") not in MODEL_TYPES:
        raise _refuse(path, "model_type", hf["model_type"], f"only {' and '.join(MODEL_TYPES)} encoders can be imported")
    s = {name: setting(hf, path, name) for name in SETTINGS}
    if s["architectures"] and not set(s["architectures"]) & set(ARCHITECTURES):
        raise _refuse(path, "architectures", s["architectures"], f"importable are {', '.join(ARCHITECTURES)}")
    checks = [
        ("feat_extract_norm", s["feat_extract_norm"] in ("group", "layer"), "another feature extractor (fairseq: group or layer norm)"),
        ("feat_extract_activation", s["feat_extract_activation"] == "gelu", "fairseq's feature extractor uses GELU"),
        ("feat_proj_layer_norm", s["feat_proj_layer_norm"], "fairseq's HuBERT always normalises the features before projecting them"),
        ("conv_pos_batch_norm", not s["conv_pos_batch_norm"], "fairseq's positional convolution is weight-normed, not batch-normed"),
        ("hidden_act", s["hidden_act"] in ACTIVATIONS, f"fairseq knows {', '.join(sorted(ACTIVATIONS))}"),
        ("layer_norm_eps", abs(s["layer_norm_eps"] - FAIRSEQ_LAYER_NORM_EPS) < 1e-12, "fairseq's layer norms use 1e-05"),
        ("add_adapter", not s["add_adapter"], "fairseq's HuBERT has no output adapter"),
        ("adapter_attn_dim", s["adapter_attn_dim"] is None, "fairseq's HuBERT has no attention adapters"),
    ]
    for field, ok, why in checks:
        if not ok:
            raise _refuse(path, field, s[field], why)
    check_shapes(s, path)
    return s


def check_shapes(s: Dict[str, Any], path: str) -> None:
    """Sizes that cannot build a model (transformers and fairseq would fail deep inside with a traceback)."""
    layers = len(s["conv_dim"])
    if not layers == len(s["conv_kernel"]) == len(s["conv_stride"]) == (s["num_feat_extract_layers"] or layers):
        lengths = ", ".join(f"{f} {len(s[f])}" for f in ("conv_dim", "conv_kernel", "conv_stride"))
        raise FesaError(
            f"{path}: conv_dim, conv_kernel, conv_stride and num_feat_extract_layers disagree ({lengths}, "
            f"num_feat_extract_layers {s['num_feat_extract_layers']}): the config is damaged, so nothing was written"
        )
    for field in ("num_attention_heads", "num_conv_pos_embedding_groups"):
        if s["hidden_size"] % s[field]:
            multiple = f"hidden_size={s['hidden_size']} is not a multiple of {field}={s[field]}"
            raise FesaError(f"{path}: {multiple}: the config is damaged, so nothing was written")


def least_weights(s: Dict[str, Any]) -> int:
    """A lower bound of the encoder weights the settings describe (the matrices every such model holds, in
    transformers and fairseq alike): a snapshot whose tensors hold fewer is not this model."""
    h, layers = s["hidden_size"], s["num_hidden_layers"]
    dims = [1] + list(s["conv_dim"])
    convs = sum(dims[i] * dims[i + 1] * k for i, k in enumerate(s["conv_kernel"]))
    positions = h * (h // s["num_conv_pos_embedding_groups"]) * s["num_conv_pos_embeddings"]
    return convs + positions + layers * (4 * h * h + 2 * h * s["intermediate_size"])


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


def receptive_field(kernels: List[int], strides: List[int]) -> int:
    """Samples one output frame sees: the shortest input the feature extractor takes."""
    field, hop = 1, 1
    for k, s in zip(kernels, strides):
        field, hop = field + (k - 1) * hop, hop * s
    return field


def frame_rate(strides: List[int], sample_rate: int = 16000) -> float:
    hop = 1
    for s in strides:
        hop *= int(s)
    return sample_rate / hop


def fairseq_model_settings(s: Dict[str, Any]) -> Dict[str, Any]:
    """fairseq ``HubertConfig`` fields of a transformers encoder's settings (:func:`read_settings`)."""
    return {
        "extractor_mode": "layer_norm" if s["feat_extract_norm"] == "layer" else "default",
        "conv_feature_layers": conv_layers(s["conv_dim"], s["conv_kernel"], s["conv_stride"]),
        "conv_bias": s["conv_bias"],
        "encoder_layers": s["num_hidden_layers"],
        "encoder_embed_dim": s["hidden_size"],
        "encoder_ffn_embed_dim": s["intermediate_size"],
        "encoder_attention_heads": s["num_attention_heads"],
        "activation_fn": ACTIVATIONS[s["hidden_act"]],
        "layer_norm_first": s["do_stable_layer_norm"],
        "conv_pos": s["num_conv_pos_embeddings"],
        "conv_pos_groups": s["num_conv_pos_embedding_groups"],
        "label_rate": frame_rate(s["conv_stride"]),
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
