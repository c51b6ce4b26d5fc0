"""fesa_fairseq's emotion classifier for transformers: HuBERT encoder, frame pooling, linear head.

`fesa export --hf` copies this file beside the weights; it needs torch and transformers only. Load with
``AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True)``. Besides the utterance logits the
model returns, per frame (50 per second of 16 kHz audio), the class posteriors (the output layer applied to each
frame, softmax over classes) and the pooling weights (summing to 1 over the recording's real frames).
"""

from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn
from transformers import HubertModel, HubertPreTrainedModel
from transformers.utils import ModelOutput


@dataclass
class EmotionClassifierOutput(ModelOutput):
    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None  # batch x classes
    frame_posteriors: Optional[torch.Tensor] = None  # batch x frames x classes
    pooling_weights: Optional[torch.Tensor] = None  # batch x frames, 0 on padding
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None


class AttentionPooling(nn.Module):
    """score_t = tanh(w . h_t), softmax over real frames (fesa_fairseq's pooling "attention")."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.score = nn.Linear(dim, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.score(frames)).squeeze(-1).float()


class MeanPooling(nn.Module):
    """Equal scores: the softmax over real frames is their mean (fesa_fairseq's pooling "mean")."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return torch.zeros(frames.shape[:2], dtype=torch.float32, device=frames.device)


class FesaHubertForEmotionClassification(HubertPreTrainedModel):
    def __init__(self, config) -> None:
        super().__init__(config)
        self.hubert = HubertModel(config)
        dim = config.hidden_size
        self.pooling = AttentionPooling(dim) if config.fesa_pooling == "attention" else MeanPooling()
        layers = [nn.Dropout(config.fesa_classifier_dropout)]
        if config.fesa_projection_dim > 0:
            layers += [nn.Linear(dim, config.fesa_projection_dim), nn.Tanh(), nn.Dropout(config.fesa_classifier_dropout)]
            dim = config.fesa_projection_dim
        layers.append(nn.Linear(dim, config.num_labels))
        self.head = nn.Sequential(*layers)
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        output_hidden_states: Optional[bool] = None,
        **kwargs,
    ) -> EmotionClassifierOutput:
        out = self.hubert(input_values, attention_mask=attention_mask, output_hidden_states=output_hidden_states)
        frames = out.last_hidden_state
        scores = self.pooling(frames)
        if attention_mask is not None:
            real = self._get_feature_vector_attention_mask(frames.shape[1], attention_mask)
            scores = scores.masked_fill(~real, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        pooled = torch.bmm(weights.unsqueeze(1).to(frames.dtype), frames).squeeze(1)
        logits = self.head(pooled)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        posteriors = torch.softmax(self.head(frames), dim=-1)
        return EmotionClassifierOutput(loss, logits, posteriors, weights, out.hidden_states)
