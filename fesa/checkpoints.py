"""Loading a trained model with fairseq's own loader, the classifier check, and where a model's frames fall."""

from dataclasses import dataclass
from typing import Any, Dict, Optional

from fesa.errors import FesaError
from fesa_fairseq.checkpoints import CheckpointInfo, inspect_checkpoint


def require_classifier(path: str, needs_labels: bool = True) -> CheckpointInfo:
    """A fine-tuned hubert_emotion_classifier whose output layer has one output per class it lists."""
    info = inspect_checkpoint(path)
    if not info.is_classifier:
        raise FesaError(
            f"{path} holds a {info.model!r} model, not a fine-tuned hubert_emotion_classifier: give the checkpoint_best.pt of a fine-tuning run"
        )
    labels = info.task_state.get("labels")
    if labels is None and needs_labels:
        raise FesaError(
            f"{path} keeps no class list in its task state (it predates that): score it with fesa evaluate on its fold folder, or fine-tune again"
        )
    if labels is not None and info.head_outputs is not None and info.head_outputs != len(labels):
        raise FesaError(
            f"{path}: its output layer has {info.head_outputs} outputs but it lists {len(labels)} classes ({', '.join(map(str, labels))}); "
            "the checkpoint is damaged or was edited: use the checkpoint_best.pt of its fine-tuning run"
        )
    return info


def load_model(path: str, arg_overrides: Optional[Dict[str, Any]] = None):
    """fairseq's own loader (model, cfg, task); a checkpoint whose weights do not fit its config is an error naming it."""
    from fairseq import checkpoint_utils

    try:
        (model,), cfg, task = checkpoint_utils.load_model_ensemble_and_task([str(path)], arg_overrides=arg_overrides)
    except (RuntimeError, KeyError) as e:
        detail = " ".join(str(e).split())[:300]
        raise FesaError(f"cannot load {path}: its weights do not fit its own configuration ({type(e).__name__}: {detail})") from e
    return model, cfg, task


@dataclass(frozen=True)
class FrameGeometry:
    """Where a model's frames fall in its input, from its own convolutional front end (never a constant):
    frame t covers samples [hop * t, hop * t + receptive_field)."""

    sample_rate: int
    hop: int  # samples between frames (the product of the strides)
    receptive_field: int  # samples the first frame needs

    @classmethod
    def of(cls, hubert: Any, sample_rate: int) -> "FrameGeometry":
        """Of a fairseq HubertModel (its feature_extractor's conv layers) reading audio at ``sample_rate``."""
        field, hop = 1, 1
        for layer in hubert.feature_extractor.conv_layers:
            conv = layer[0]
            field += (conv.kernel_size[0] - 1) * hop
            hop *= conv.stride[0]
        return cls(int(sample_rate), hop, field)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop

    def frames(self, samples: int) -> int:
        """Frames the model makes of ``samples`` samples (0 below the receptive field)."""
        return max(0, (samples - self.receptive_field) // self.hop + 1)


HUBERT_GEOMETRY = FrameGeometry(16000, 320, 400)  # HuBERT base and large: 50 frames per second of 16 kHz audio
