"""Several waveforms through a HuBERT encoder at once, each scored as it would be alone.

A padded batch is not enough: HuBERT's "default" front end (HuBERT base's, and the tiny models') group-normalises
its first convolution over the whole time axis, padding included, so padding would change every frame. Here the
front end runs on groups of waveforms of equal length (the windows of a long recording are all equal but the
last; nothing is padded), and the rest (layer norm, projection, transformer), which treats frames one by one or
honours a padding mask, runs on the padded batch of frames. The frame padding mask is each waveform's own frame
count, so it is exact, whatever the front end.
"""

from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import torch


def length_batches(lengths: Sequence[int], budget: int) -> List[List[int]]:
    """Indices into ``lengths`` in batches of at most ``budget`` padded samples (count × longest; one item at least),
    longest first, so that each batch pads little. ``budget`` 0: one item per batch, in the given order."""
    if budget <= 0:
        return [[i] for i in range(len(lengths))]
    batches: List[List[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if batches and lengths[batches[-1][0]] * (len(batches[-1]) + 1) <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


def front_end(hubert, waves: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The convolutional front end of each waveform (channels × frames), waveforms of equal length stacked."""
    groups: Dict[int, List[int]] = defaultdict(list)
    for i, wave in enumerate(waves):
        groups[wave.numel()].append(i)
    out: List[Optional[torch.Tensor]] = [None] * len(waves)
    for members in groups.values():
        features = hubert.forward_features(torch.stack([waves[i] for i in members]))
        for i, f in zip(members, features):
            out[i] = f
    return out


def extract_features_batched(hubert, waves: Sequence[torch.Tensor], output_layer: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``HubertModel.extract_features(w, mask=False, output_layer=...)`` of every 1-D waveform in ``waves``, batched:
    frames (B × T × D, T the longest) and the frame padding mask (B × T, True on padding)."""
    features = front_end(hubert, waves)
    counts = [f.size(-1) for f in features]
    longest = max(counts)
    padded = features[0].new_zeros(len(features), features[0].size(0), longest)
    for i, f in enumerate(features):
        padded[i, :, : f.size(-1)] = f
    padding_mask = torch.arange(longest, device=padded.device)[None, :] >= torch.tensor(counts, device=padded.device)[:, None]
    # HubertModel.forward after its front end, in eval mode without masking (features_only).
    x = hubert.layer_norm(padded.transpose(1, 2))
    if hubert.post_extract_proj is not None:
        x = hubert.post_extract_proj(x)
    x = hubert.dropout_input(x)
    x, _ = hubert.encoder(x, padding_mask=padding_mask, layer=None if output_layer is None else output_layer - 1)
    return x, padding_mask
