"""HuBERT for task-adaptive and continued pretraining, warm-started from any HuBERT-family checkpoint."""

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
from fairseq import checkpoint_utils
from fairseq.models import register_model
from fairseq.models.hubert.hubert import HubertConfig, HubertModel

from fesa_fairseq.checkpoints import describe_state, encoder_weights
from fesa_fairseq.errors import FesaError

logger = logging.getLogger(__name__)

# The only tensors tied to the label set: new labels (another K, another clustering) start them afresh.
LABEL_TENSORS = ("label_embs_concat", "final_proj.weight", "final_proj.bias")


@dataclass
class EmotionHubertConfig(HubertConfig):
    init_checkpoint: Optional[str] = field(
        default=None,
        metadata={
            "help": "warm-start every weight from this checkpoint: hubert_pretraining, emotion_hubert_pretraining, an "
            "official release, or a fine-tuned hubert_emotion_classifier (its encoder). Label embeddings and the final "
            "projection start afresh when the label set differs. Used by the emotion_hubert_pretraining task."
        },
    )


@register_model("emotion_hubert", dataclass=EmotionHubertConfig)
class EmotionHubertModel(HubertModel):
    @classmethod
    def build_model(cls, cfg: EmotionHubertConfig, task) -> "EmotionHubertModel":
        return cls(cfg, task.cfg, task.dictionaries)

    def load_init_checkpoint(self, path: str) -> None:
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        weights = encoder_weights(state, describe_state(state, path))
        own = self.state_dict()
        relabel = weights.get("label_embs_concat") is None or weights["label_embs_concat"].shape != own["label_embs_concat"].shape
        keep = {n for n in LABEL_TENSORS if n in own} if relabel else set()
        problems = _mismatches(own, weights, keep)
        if problems:
            raise FesaError(
                f"init_checkpoint {path} does not fit this model: {'; '.join(problems[:6])}"
                f"{f' (and {len(problems) - 6} more)' if len(problems) > 6 else ''}. Give the model the checkpoint's "
                "architecture (encoder_layers, encoder_embed_dim, conv_feature_layers, final_dim, ...)"
            )
        merged = {name: (own[name] if name in keep else weights[name]) for name in own}
        self.load_state_dict(merged, strict=True)
        logger.info("init_checkpoint %s: loaded %d tensors", path, len(own) - len(keep))
        if keep:
            shapes = {n: tuple(weights[n].shape) if n in weights else "absent" for n in keep}
            logger.info(
                "init_checkpoint: the label set differs, re-initialised %s",
                ", ".join(f"{n} (checkpoint: {shapes[n]}, here: {tuple(own[n].shape)})" for n in sorted(keep)),
            )


def _mismatches(own: Dict[str, torch.Tensor], weights: Dict[str, torch.Tensor], keep: set) -> List[str]:
    problems: List[str] = []
    for name, tensor in own.items():
        if name in keep:
            continue
        if name not in weights:
            problems.append(f"{name} is missing")
        elif weights[name].shape != tensor.shape:
            problems.append(f"{name} is {tuple(weights[name].shape)} there, {tuple(tensor.shape)} here")
    problems += [f"{name} is not in this model" for name in sorted(set(weights) - set(own) - set(LABEL_TENSORS))]
    return problems
