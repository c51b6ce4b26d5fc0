"""The project's exceptions, defined in the torch-free ``fesa.errors`` (the command line needs them before torch)."""

from fesa.errors import FesaError, StageFailed

__all__ = ["FesaError", "StageFailed"]
