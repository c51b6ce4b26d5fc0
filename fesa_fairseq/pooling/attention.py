"""Soft-attention pooling (the paper's and the authors' code): score_t = tanh(w·h_t), softmax over real frames."""

from typing import Optional, Tuple

import torch
from torch import nn

from fesa_fairseq.pooling import register_pooling


@register_pooling("attention")
class AttentionPooling(nn.Module):
    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(embed_dim, 1)

    def log_weights(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """B×T scores before the softmax (-inf on padding): the weights of any set of frames are their softmax."""
        scores = torch.tanh(self.score(x)).squeeze(-1).float()
        return scores if padding_mask is None else scores.masked_fill(padding_mask, float("-inf"))

    def forward(self, x: torch.Tensor, padding_mask: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """x: B×T×C, padding_mask: B×T (True on padding) or None → (B×C pooled, B×T weights, 0 on padding)."""
        weights = torch.softmax(self.log_weights(x, padding_mask), dim=-1)
        pooled = torch.bmm(weights.unsqueeze(1).to(x.dtype), x).squeeze(1)
        return pooled, weights
