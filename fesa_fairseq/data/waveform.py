"""The one preparation of a waveform for a HuBERT-family model: what training, scoring, labelling and export feed it."""

import torch
import torch.nn.functional as F


def prepare_waveform(wav: torch.Tensor, normalize: bool) -> torch.Tensor:
    """``wav`` (samples, or 1 x samples) as the model was trained to see it: layer-normalised over the whole input
    when its task says ``normalize`` (HuBERT large), as it is otherwise (HuBERT base)."""
    return F.layer_norm(wav, wav.shape) if normalize else wav
