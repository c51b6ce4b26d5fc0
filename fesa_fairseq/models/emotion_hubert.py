"""HuBERT for task-adaptive and continued pretraining, warm-started from any HuBERT-family checkpoint."""

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from fairseq import checkpoint_utils
from fairseq.data import Dictionary
from fairseq.dataclass import ChoiceEnum
from fairseq.models import register_model
from fairseq.models.hubert.hubert import HubertConfig, HubertModel

from fesa_fairseq.checkpoints import describe_state, encoder_weights
from fesa_fairseq.errors import InputError

logger = logging.getLogger(__name__)

# The only tensors tied to the label set: new labels (another K, another clustering) start them afresh.
LABEL_TENSORS = ("label_embs_concat", "final_proj.weight", "final_proj.bias")
RESET_LABEL_EMBEDDINGS = ChoiceEnum(["auto", "always", "never"])


@dataclass
class EmotionHubertConfig(HubertConfig):
    init_checkpoint: Optional[str] = field(
        default=None,
        metadata={
            "help": "warm-start every weight from this checkpoint: hubert_pretraining, emotion_hubert_pretraining, an "
            "official release, or a fine-tuned hubert_emotion_classifier (its encoder). Label embeddings and the final "
            "projection start afresh or are kept as reset_label_embeddings says. Used by the emotion_hubert_pretraining task."
        },
    )
    reset_label_embeddings: RESET_LABEL_EMBEDDINGS = field(
        default="auto",
        metadata={
            "help": "warm start of label_embs_concat and final_proj from init_checkpoint. auto: start them afresh unless "
            "the checkpoint's label dictionaries equal this task's in symbols, order and counts (dict.km.txt's second "
            "column: two clusterings with the same K share the symbols 0..K-1, not the counts); always: afresh; "
            "never: keep the checkpoint's (it must have them, for this K)"
        },
    )


@register_model("emotion_hubert", dataclass=EmotionHubertConfig)
class EmotionHubertModel(HubertModel):
    @classmethod
    def build_model(cls, cfg: EmotionHubertConfig, task) -> "EmotionHubertModel":
        return cls(cfg, task.cfg, task.dictionaries)

    def load_init_checkpoint(self, path: str, dictionaries: Sequence[Dictionary], reset_label_embeddings: str = "auto") -> None:
        """Every weight from ``path``; the label tensors as ``reset_label_embeddings`` decides (logged, with why)."""
        state = checkpoint_utils.load_checkpoint_to_cpu(path)
        info = describe_state(state, path)
        weights = encoder_weights(state, info)
        own = self.state_dict()
        reset, reason = label_reset_decision(
            str(reset_label_embeddings),
            dictionaries,
            info.task_state.get("dictionaries"),
            weights.get("label_embs_concat"),
            own["label_embs_concat"],
            path,
        )
        keep = {n for n in LABEL_TENSORS if n in own} if reset else set()
        problems = _mismatches(own, weights, keep)
        if problems:
            raise InputError(
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
                "init_checkpoint: label embeddings reset (%s): re-initialised %s",
                reason,
                ", ".join(f"{n} (checkpoint: {shapes[n]}, here: {tuple(own[n].shape)})" for n in sorted(keep)),
            )
        else:
            logger.info("init_checkpoint: label embeddings kept (%s)", reason)


def _same_dictionaries(ours: Sequence[Dictionary], theirs: Sequence[Any]) -> Tuple[bool, str]:
    if len(ours) != len(theirs):
        return False, f"{len(theirs)} label dictionaries there, {len(ours)} here"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if list(a.symbols) != list(b.symbols):
            return False, f"label dictionary {i}: other symbols or order ({len(b.symbols)} there, {len(a.symbols)} here)"
        if list(a.count) != list(b.count):
            return False, f"label dictionary {i}: same {len(a) - a.nspecial} symbols, other counts: another clustering or other audio"
    return True, "the checkpoint's label dictionaries equal this task's (symbols, order and counts)"


def label_reset_decision(
    mode: str, ours: Sequence[Dictionary], theirs: Optional[Sequence[Any]], their_embs: Optional[torch.Tensor], own_embs: torch.Tensor, path: str
) -> Tuple[bool, str]:
    """(reset, why) for the label tensors of a warm start."""
    if mode == "always":
        return True, "reset_label_embeddings=always"
    if mode == "never":
        if their_embs is None or their_embs.shape != own_embs.shape:
            there = "none" if their_embs is None else tuple(their_embs.shape)
            raise InputError(
                f"reset_label_embeddings=never, but the label embeddings of {path} are {there} and this label "
                f"set needs {tuple(own_embs.shape)}: use auto or always, or the labels the checkpoint was trained on"
            )
        return False, "reset_label_embeddings=never"
    if their_embs is None:
        return True, "auto: the checkpoint has no label embeddings"
    if not theirs:
        return True, "auto: the checkpoint records no label dictionaries to compare with"
    same, why = _same_dictionaries(ours, theirs)
    return (not same), f"auto: {why}"


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
