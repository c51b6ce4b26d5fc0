"""What kind of model a fairseq checkpoint holds, read without loading its weights, and the HuBERT weights in it."""

import logging
import pickle
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from fesa_fairseq.errors import InputError

logger = logging.getLogger(__name__)

# What torch.load raises on a file that is not a checkpoint (random bytes, text, a cut-off zip).
UNREADABLE = (
    pickle.UnpicklingError,
    RuntimeError,
    EOFError,
    OSError,
    KeyError,
    ValueError,
    AttributeError,
    ImportError,
    IndexError,
    struct.error,
    TypeError,
    MemoryError,
)


# Registered model names whose checkpoints are pretrained HuBERTs (stock fairseq's and this plugin's).
PRETRAINED_HUBERT_MODELS = ("hubert", "emotion_hubert")


CLASSIFIER_MODEL = "hubert_emotion_classifier"


@dataclass
class CheckpointInfo:
    path: str
    model: Optional[str]  # registered model name (cfg.model._name, or args.arch of older releases)
    task: Optional[str]
    task_state: Dict[str, Any] = field(default_factory=dict)
    encoder_layers: Optional[int] = None  # transformer layers, from the config (None where it does not say)
    head_outputs: Optional[int] = None  # a classifier's output layer size (None for other models)

    @property
    def is_pretrained_hubert(self) -> bool:
        return self.model in PRETRAINED_HUBERT_MODELS

    @property
    def is_classifier(self) -> bool:
        return self.model == CLASSIFIER_MODEL


def _load_lazily(path: Path) -> Dict[str, Any]:
    """mmap keeps tensors on disk; checkpoints in torch's old (non-zip) format cannot be mapped."""
    try:
        return torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        return torch.load(str(path), map_location="cpu", weights_only=True)


def inspect_checkpoint(path: str) -> CheckpointInfo:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # a damaged file's "pickle protocol 138" warning says nothing the error does not
            warnings.simplefilter("ignore", UserWarning)
            state = _load_lazily(p)
    except UNREADABLE as e:
        detail = (str(e).splitlines() or [""])[0]
        raise InputError(f"cannot read checkpoint {path}: not a PyTorch checkpoint, or damaged ({type(e).__name__}: {detail})") from e
    return describe_state(state, path)


def describe_state(state: Dict[str, Any], path: str) -> CheckpointInfo:
    """The kind of a checkpoint already loaded with torch.load."""
    if not isinstance(state, dict) or "model" not in state:
        raise InputError(f"{path} is not a fairseq checkpoint (it has no 'model' entry)")
    cfg, args = state.get("cfg"), state.get("args")
    if cfg is not None:
        model, task = (cfg.get("model") or {}).get("_name"), (cfg.get("task") or {}).get("_name")
    elif args is not None:
        model, task = getattr(args, "arch", None), getattr(args, "task", None)
    else:
        raise InputError(f"{path} has neither 'cfg' nor 'args': not a fairseq training checkpoint")
    task_state = state.get("task_state") or {}
    head = _head_outputs(state["model"]) if model == CLASSIFIER_MODEL else None
    return CheckpointInfo(str(path), model, task, task_state, _encoder_layers(cfg, args, model, task_state), head)


def _head_outputs(weights: Dict[str, Any]) -> Optional[int]:
    """Rows of the last linear layer of the classifier's head (head.<i>.weight with the largest i)."""
    linear = [(int(k.split(".")[1]), v) for k, v in weights.items() if k.startswith("head.") and k.endswith(".weight") and k.split(".")[1].isdigit()]
    return int(max(linear, key=lambda kv: kv[0])[1].shape[0]) if linear else None


def _encoder_layers(cfg: Any, args: Any, model: Optional[str], task_state: Dict[str, Any]) -> Optional[int]:
    if model == CLASSIFIER_MODEL:
        settings = ((task_state.get("w2v_args") or {}).get("model")) or {}
    elif cfg is not None:
        settings = cfg.get("model") or {}
    else:
        settings = vars(args)
    layers = settings.get("encoder_layers")
    return int(layers) if layers is not None else None


def encoder_weights(state: Dict[str, Any], info: CheckpointInfo) -> Dict[str, Any]:
    """HubertModel weights of a pretrained HuBERT, or of a fine-tuned classifier's encoder."""
    require_hubert_family(info)
    if info.is_classifier:
        prefix = "encoder.w2v_model."
        return {k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)}
    return state["model"]


def require_hubert_family(info: CheckpointInfo) -> CheckpointInfo:
    """A pretrained HuBERT or a fine-tuned classifier (whose encoder is one); anything else is refused."""
    if not (info.is_pretrained_hubert or info.is_classifier):
        raise InputError(
            f"{info.path} holds a {info.model!r} model (task {info.task!r}); a HuBERT is needed: hubert_pretraining, "
            "emotion_hubert_pretraining, an official release, or a fine-tuned hubert_emotion_classifier"
        )
    return info


def require_pretrained_hubert(path: str, option: str) -> CheckpointInfo:
    info = inspect_checkpoint(path)
    if not info.is_pretrained_hubert:
        raise InputError(
            f"{option}={path} holds a {info.model!r} model (task {info.task!r}); it must be a pretrained HuBERT: "
            f"a checkpoint of fairseq's hubert_pretraining or of emotion_hubert_pretraining, or an official release "
            f"such as hubert_base_ls960.pt"
        )
    if "dictionaries" not in info.task_state:
        raise InputError(f"{option}={path} has no label dictionaries in its task_state: not a HuBERT pretraining checkpoint")
    return info
