"""Average pooling over real (non-padding) frames."""

from typing import Optional, Tuple

import torch
from torch import nn

from fesa_fairseq.pooling import register_pooling


@register_pooling("mean")
class MeanPooling(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()

    def log_weights(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """B×T zeros (-inf on padding): the softmax of equal scores is the mean."""
        scores = torch.zeros(x.shape[:2], dtype=torch.float32, device=x.device)
        return scores if padding_mask is None else scores.masked_fill(padding_mask, float("-inf"))

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Same contract as attention pooling; the weights are uniform over real frames."""
        real = torch.ones(x.shape[:2], dtype=torch.float32, device=x.device)
        if padding_mask is not None:
            real = real.masked_fill(padding_mask, 0.0)
        weights = real / real.sum(dim=-1, keepdim=True).clamp(min=1.0)
        pooled = torch.bmm(weights.unsqueeze(1).to(x.dtype), x).squeeze(1)
        return pooled, weights
