"""Frame → utterance pooling, padding-aware. Each pooling is registered under the name configs use."""

from typing import Callable, Dict, Type

from fairseq.dataclass import ChoiceEnum
from torch import nn

POOLING_REGISTRY: Dict[str, Type[nn.Module]] = {}


def register_pooling(name: str) -> Callable[[Type[nn.Module]], Type[nn.Module]]:
    def register(cls: Type[nn.Module]) -> Type[nn.Module]:
        if name in POOLING_REGISTRY:
            raise ValueError(f"pooling {name!r} is already registered")
        POOLING_REGISTRY[name] = cls
        return cls

    return register


def build_pooling(name: str, embed_dim: int) -> nn.Module:
    if name not in POOLING_REGISTRY:
        raise ValueError(f"unknown pooling {name!r}; registered: {', '.join(sorted(POOLING_REGISTRY))}")
    return POOLING_REGISTRY[name](embed_dim)


from fesa_fairseq.pooling import attention, mean  # noqa: E402,F401

# The one list of poolings, from the registry: the classifier's config and the experiment config both check it.
POOLING_CHOICES = ChoiceEnum(sorted(POOLING_REGISTRY))
