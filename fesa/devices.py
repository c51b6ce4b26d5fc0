"""Where models run, and in which precision: one rule for every command, so the same code serves CPU and CUDA."""

import contextlib
import logging
from typing import ContextManager, Optional

import torch

from fesa.errors import FesaError
from fesa.options import SCORING_BATCH_SECONDS, check_batch_seconds, check_device_name, check_precision

logger = logging.getLogger(__name__)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(device: str) -> torch.device:
    """'auto' is CUDA when torch sees a GPU, else the CPU; an explicit CUDA device must exist."""
    check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FesaError(f"--device {device} asked for, but torch sees no CUDA device")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise FesaError(f"--device {device}: torch sees {torch.cuda.device_count()} CUDA device(s), numbered from 0")
    return torch.device(device)


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: without them torch emulates bf16 on the CPU, slower than fp32."""
    return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _bf16_available(device: torch.device) -> bool:
    return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()


def resolve_precision(precision: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for `precision` on `device` (None: fp32); a choice the device cannot run is refused."""
    check_precision(precision)
    where = "this GPU" if device.type == "cuda" else "this CPU"
    if precision == "auto":
        if _bf16_available(device):
            chosen, why = "bf16", f"{where} has bf16 instructions"
        elif device.type == "cuda":
            chosen, why = "fp16", f"{where} has no bf16"
        else:
            chosen, why = "fp32", f"{where} has no bf16 instructions (AVX512-BF16 or AMX): emulated bf16 would be slower"
        logger.info("precision auto: %s on %s (%s)", chosen, device, why)
        precision = chosen
    if precision == "fp32":
        return None
    if precision == "fp16" and device.type != "cuda":
        raise FesaError("--precision fp16 runs on CUDA only (the CPU has no fast fp16 arithmetic): use bf16 or fp32 on the CPU")
    if precision == "bf16" and not _bf16_available(device):
        fix = "use fp16 or fp32" if device.type == "cuda" else "use fp32 (bf16 would be emulated, slower than fp32)"
        raise FesaError(f"--precision bf16: {where} has no bf16 arithmetic; {fix}")
    return DTYPES[precision]


def precision_name(dtype: Optional[torch.dtype]) -> str:
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def autocast(device: torch.device, dtype: Optional[torch.dtype]) -> ContextManager:
    """torch's autocast for `dtype` on `device`; nothing for fp32."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def resolve_batch_seconds(seconds: Optional[float], device: torch.device) -> float:
    """Seconds of audio per scoring pass: ``seconds`` as given (0: one at a time), or None: the device's default."""
    if seconds is None:
        return SCORING_BATCH_SECONDS.get(device.type, 0.0)
    check_batch_seconds(seconds)
    return float(seconds)
