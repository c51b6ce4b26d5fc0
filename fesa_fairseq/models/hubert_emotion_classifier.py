"""HuBERT encoder + frame pooling + linear head: utterance-level speech emotion classification.

The encoder is fairseq's own HuBERT fine-tuning wrapper (``HubertEncoder``): it loads ``w2v_path``, applies
the fine-tuning dropouts, masks and layerdrop, scales the feature extractor's gradient
(``feature_grad_mult``; 0 freezes it) and keeps the transformer frozen for ``freeze_finetune_updates``.
"""

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from fairseq.models import BaseFairseqModel, register_model
from fairseq.models.hubert.hubert_asr import HubertAsrConfig, HubertEncoder
from omegaconf import OmegaConf
from torch import nn

from fesa_fairseq.checkpoints import require_pretrained_hubert
from fesa_fairseq.models.batching import extract_features_batched
from fesa_fairseq.pooling import POOLING_CHOICES, build_pooling

logger = logging.getLogger(__name__)


@dataclass
class HubertEmotionClassifierConfig(HubertAsrConfig):
    pooling: POOLING_CHOICES = field(
        default="attention",
        metadata={"help": "frames -> utterance: 'attention' (learned scores, softmax over real frames) or 'mean'"},
    )
    projection_dim: int = field(default=0, metadata={"help": "hidden size of a tanh projection between pooling and the output layer; 0 for none"})
    classifier_dropout: float = field(default=0.0, metadata={"help": "dropout on the pooled utterance vector"})


class EmotionHubertEncoder(HubertEncoder):
    """fairseq's ``HubertEncoder`` whose checkpoints stand on their own.

    fairseq builds a model from a merged copy of its config, so the ``w2v_args`` that ``HubertEncoder``
    records never reach the saved checkpoint, and rebuilding would re-read ``w2v_path`` and the
    pretraining label dictionaries. Both are kept in the task state instead (saved as ``task_state``,
    restored before the model is built). A ``w2v_path`` that is not a pretrained HuBERT is refused clearly.
    """

    def __init__(self, cfg: HubertEmotionClassifierConfig, task) -> None:
        if cfg.w2v_args is None:
            saved = getattr(task.state, "w2v_args", None)
            if saved is not None:
                cfg.w2v_args = OmegaConf.create(saved)
            else:
                info = require_pretrained_hubert(cfg.w2v_path, "model.w2v_path")
                task.state.merge_state_dict({"dictionaries": info.task_state["dictionaries"]})
        super().__init__(cfg, task)
        task.state.merge_state_dict({"w2v_args": OmegaConf.to_container(cfg.w2v_args, resolve=True, enum_to_str=True)})


@register_model("hubert_emotion_classifier", dataclass=HubertEmotionClassifierConfig)
class HubertEmotionClassifier(BaseFairseqModel):
    def __init__(self, cfg: HubertEmotionClassifierConfig, encoder: HubertEncoder, num_classes: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        dim = cfg.w2v_args.model.encoder_embed_dim
        self.pooling = build_pooling(cfg.pooling, dim)
        layers: List[nn.Module] = [nn.Dropout(cfg.classifier_dropout)]
        if cfg.projection_dim > 0:
            layers += [nn.Linear(dim, cfg.projection_dim), nn.Tanh(), nn.Dropout(cfg.classifier_dropout)]
            dim = cfg.projection_dim
        layers.append(nn.Linear(dim, num_classes))
        self.head = nn.Sequential(*layers)

    @classmethod
    def build_model(cls, cfg: HubertEmotionClassifierConfig, task) -> "HubertEmotionClassifier":
        encoder = EmotionHubertEncoder(cfg, task)
        return cls(cfg, encoder, len(task.labels))

    def forward(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None, **kwargs) -> Dict[str, torch.Tensor]:
        """logits (B×classes), attention (B×T frame weights, 0 on padding) and the frame padding mask."""
        out = self.encoder(source, padding_mask, tbc=False)
        frames, frame_padding = out["encoder_out"], out["padding_mask"]
        pooled, weights = self.pooling(frames, frame_padding)
        return {"logits": self.head(pooled), "attention": weights, "padding_mask": frame_padding}

    def frame_outputs(self, source: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """Per frame: the encoder's output (B×T×D), the output layers applied to it (frame_logits, B×T×classes) and
        the pooling's log-weights (B×T, -inf on padding), with the frame padding mask.

        Without a projection layer the head is affine and the weights sum to 1, so in eval mode the utterance
        logits are exactly sum_t softmax(log_weights)_t * frame_logits_t. With one (tanh) that sum is only an
        approximation: the utterance logits are the head applied to the pooled frames.
        """
        out = self.encoder(source, padding_mask, tbc=False)
        return self._frame_outputs(out["encoder_out"], out["padding_mask"])

    def frame_outputs_batched(self, waves: Sequence[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``frame_outputs`` of several 1-D waveforms in one padded batch, each frame as the waveform alone gives it
        (``models.batching``: the group-normalised front end never sees padding). Eval mode."""
        x, frame_padding = extract_features_batched(self.encoder.w2v_model, waves)
        x = self.encoder.final_dropout(x)
        if self.encoder.proj is not None:
            x = self.encoder.proj(x)
        return self._frame_outputs(x, frame_padding)

    def _frame_outputs(self, frames: torch.Tensor, frame_padding: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {
            "frames": frames,
            "frame_logits": self.head(frames),
            "log_weights": self.pooling.log_weights(frames, frame_padding),
            "padding_mask": frame_padding,
        }

    def extract_features(
        self,
        source: torch.Tensor,
        padding_mask: Optional[torch.Tensor] = None,
        mask: bool = False,
        ret_conv: bool = False,
        output_layer: Optional[int] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Frame features of the (fine-tuned) encoder, exactly like ``HubertModel.extract_features``."""
        return self.encoder.w2v_model.extract_features(source, padding_mask=padding_mask, mask=mask, ret_conv=ret_conv, output_layer=output_layer)

    def get_logits(self, net_output: Dict[str, torch.Tensor]) -> torch.Tensor:
        return net_output["logits"]

    def get_targets(self, sample, net_output) -> torch.Tensor:
        return sample["target"]
