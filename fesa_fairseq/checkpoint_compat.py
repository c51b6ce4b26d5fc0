"""Let torch >= 2.6, which loads with ``weights_only=True`` by default, read fairseq checkpoints.

fairseq calls ``torch.load`` without ``weights_only``. Rather than turn the safe loader off, the few
data-only classes that fairseq checkpoints pickle are allowlisted:

* ``fairseq.data.dictionary.Dictionary``: the label dictionaries in ``task_state`` (every HuBERT checkpoint);
* ``argparse.Namespace``: the ``args`` of checkpoints from before fairseq's hydra configs;
* numpy arrays and scalars (``_reconstruct``, ``scalar``, ``ndarray``, ``dtype``): meters and losses that
  older fairseq versions stored in ``extra_state``.

Each of these rebuilds plain data and runs no code of the checkpoint's choosing.
"""

import argparse
import logging
from typing import List

import numpy as np
import torch

logger = logging.getLogger(__name__)


def _numpy_globals() -> List[object]:
    try:  # numpy >= 2 moved the pickled names under numpy._core
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.bool_)]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtypes]


def safe_globals() -> List[object]:
    from fairseq.data.dictionary import Dictionary

    return [Dictionary, argparse.Namespace, *_numpy_globals()]


def allow_fairseq_checkpoints() -> None:
    """Allowlist the classes above for torch's safe loader (a no-op on torch < 2.4, which has none)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:
        add(safe_globals())
