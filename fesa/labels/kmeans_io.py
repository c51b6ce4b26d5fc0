"""Reading a k-means model a user names, without running code from it.

k-means models are joblib pickles (fairseq's ``learn_kmeans`` writes them, and fairseq releases
``hubert_base_ls960_L9_km500.bin`` so). ``joblib.load`` on a crafted file runs whatever it says, so a file the
user gives is read with joblib's own unpickler restricted to the classes a scikit-learn k-means model consists
of; anything else is refused, naming the class, before it is built. Arrays of Python objects are refused too:
joblib reads them as a nested pickle, which joblib < 1.6 reads with plain ``pickle.load``, outside any check.
"""

import inspect
import pickle

import numpy as np
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

from fesa.errors import FesaError, user_errors

ALLOWED = {
    *((module, cls) for module in ("sklearn.cluster._kmeans", "sklearn.cluster.k_means_") for cls in ("KMeans", "MiniBatchKMeans")),
    ("joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    *((module, fn) for module in ("numpy.core.multiarray", "numpy._core.multiarray") for fn in ("_reconstruct", "scalar")),
}
# joblib's compressed formats start with these bytes; fairseq's and our k-means files are not compressed.
COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"\x5d\x00\x00", b"ZF", b"\x78\x9c", b"\x78\x01", b"\x78\xda")


class _KMeansUnpickler(NumpyUnpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise FesaError(
                f"{self.filename} would build {module}.{name}, which is not part of a scikit-learn k-means "
                "model; refusing to load it (a pickle can run code)"
            )
        return super().find_class(module, name)

    def load_build(self) -> None:
        """Before joblib reads an array's data: only arrays of numbers (an object array is a nested pickle)."""
        obj, state = self.stack[-2], self.stack[-1]
        if isinstance(obj, NumpyArrayWrapper):
            dtype = state.get("dtype") if isinstance(state, dict) else None
            if not isinstance(dtype, np.dtype) or dtype.hasobject:
                raise FesaError(
                    f"{self.filename} holds an array of Python objects (dtype {dtype}), which no k-means model has; "
                    "refusing to load it (its contents would be unpickled)"
                )
        NumpyUnpickler.load_build(self)

    dispatch = NumpyUnpickler.dispatch.copy()
    dispatch[pickle.BUILD[0]] = load_build


def load_kmeans(path: str):
    """The fitted k-means model in `path`, checked to be one; a clear error for anything else."""
    kwargs = {"ensure_native_byte_order": True} if "ensure_native_byte_order" in inspect.signature(NumpyUnpickler.__init__).parameters else {}
    try:
        with open(path, "rb") as f:
            if f.read(6).startswith(COMPRESSED):
                raise FesaError(f"{path} is a compressed joblib file; save the model uncompressed (joblib.dump(model, path))")
            f.seek(0)
            model = _KMeansUnpickler(str(path), f, **kwargs).load()
    except user_errors():
        raise
    except OSError as e:
        raise FesaError(f"cannot read k-means model {path}: {e.strerror or e}") from e
    except Exception as e:  # any other decoding failure of a file that is not a k-means pickle
        raise FesaError(f"{path} is not a k-means model saved with joblib: {type(e).__name__}: {e}") from e
    centers = getattr(model, "cluster_centers_", None)
    if not isinstance(centers, np.ndarray) or centers.ndim != 2:
        raise FesaError(f"{path} is not a fitted scikit-learn k-means model (no cluster_centers_)")
    return model
