"""Tensor names of a transformers HuBERT / wav2vec 2.0 encoder and of fairseq's ``HubertModel``, both ways.

The two hold the same tensors in the same shapes; only the names differ. fairseq's feature extractor is a
``Sequential`` (conv, dropout, norm, GELU), so a conv layer's norm is ``.2`` (group norm, first layer only) or
``.2.1`` (layer norm inside transposes, every layer). The positional convolution is weight-normed: torch before
2.1 names its halves ``weight_g``/``weight_v``, later torch ``parametrizations.weight.original0``/``original1``;
transformers snapshots exist in both spellings, fairseq keeps the old one.
"""

import re
from typing import Dict, List, Sequence, Tuple

import torch

# transformers encoder name -> fairseq HubertModel name; {mode}: the conv norm's place for the extractor mode.
_HF_TO_FAIRSEQ: Sequence[Tuple[str, str]] = (
    (r"feature_extractor\.conv_layers\.(\d+)\.conv\.(weight|bias)", r"feature_extractor.conv_layers.\1.0.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.layer_norm\.(weight|bias)", r"feature_extractor.conv_layers.\1.{norm}.\2"),
    (r"feature_projection\.layer_norm\.(weight|bias)", r"layer_norm.\1"),
    (r"feature_projection\.projection\.(weight|bias)", r"post_extract_proj.\1"),
    (r"masked_spec_embed", r"mask_emb"),
    (r"encoder\.pos_conv_embed\.conv\.bias", r"encoder.pos_conv.0.bias"),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_g|parametrizations\.weight\.original0)", r"encoder.pos_conv.0.weight_g"),
    (r"encoder\.pos_conv_embed\.conv\.(?:weight_v|parametrizations\.weight\.original1)", r"encoder.pos_conv.0.weight_v"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.attention\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.self_attn.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.layer_norm\.(weight|bias)", r"encoder.layers.\1.self_attn_layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.intermediate_dense\.(weight|bias)", r"encoder.layers.\1.fc1.\2"),
    (r"encoder\.layers\.(\d+)\.feed_forward\.output_dense\.(weight|bias)", r"encoder.layers.\1.fc2.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
)

# fairseq name -> transformers name (the new weight-norm spelling, which transformers writes and reads).
_FAIRSEQ_TO_HF: Sequence[Tuple[str, str]] = (
    (r"feature_extractor\.conv_layers\.(\d+)\.0\.(weight|bias)", r"feature_extractor.conv_layers.\1.conv.\2"),
    (r"feature_extractor\.conv_layers\.(\d+)\.2(?:\.1)?\.(weight|bias)", r"feature_extractor.conv_layers.\1.layer_norm.\2"),
    (r"layer_norm\.(weight|bias)", r"feature_projection.layer_norm.\1"),
    (r"post_extract_proj\.(weight|bias)", r"feature_projection.projection.\1"),
    (r"mask_emb", r"masked_spec_embed"),
    (r"encoder\.pos_conv\.0\.bias", r"encoder.pos_conv_embed.conv.bias"),
    (r"encoder\.pos_conv\.0\.weight_g", r"encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"encoder\.pos_conv\.0\.weight_v", r"encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"encoder\.layer_norm\.(weight|bias)", r"encoder.layer_norm.\1"),
    (r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"encoder.layers.\1.attention.\2_proj.\3"),
    (r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"encoder.layers.\1.layer_norm.\2"),
    (r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"encoder.layers.\1.feed_forward.intermediate_dense.\2"),
    (r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"encoder.layers.\1.feed_forward.output_dense.\2"),
    (r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"encoder.layers.\1.final_layer_norm.\2"),
)

# fairseq HubertModel tensors that belong to pretraining on its own targets: transformers encoders have none.
PRETRAINING_HEAD = ("label_embs_concat", "final_proj.weight", "final_proj.bias")


def _rename(name: str, rules: Sequence[Tuple[str, str]], norm: str = "2") -> str:
    for pattern, template in rules:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, template.replace("{norm}", norm), name)
    return ""


def to_fairseq(weights: Dict[str, torch.Tensor], extractor_mode: str) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """A transformers encoder's tensors (no model prefix) under fairseq names, and the names that have none."""
    norm = "2.1" if extractor_mode == "layer_norm" else "2"
    mapped, unknown = {}, []
    for name, tensor in weights.items():
        target = _rename(name, _HF_TO_FAIRSEQ, norm)
        if target:
            mapped[target] = tensor
        else:
            unknown.append(name)
    return mapped, unknown


def to_transformers(weights: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """fairseq HubertModel tensors under transformers encoder names (pretraining heads left out), and the names
    that have none."""
    mapped, unknown = {}, []
    for name, tensor in weights.items():
        if name in PRETRAINING_HEAD:
            continue
        target = _rename(name, _FAIRSEQ_TO_HF)
        if target:
            mapped[target] = tensor
        else:
            unknown.append(name)
    return mapped, unknown
