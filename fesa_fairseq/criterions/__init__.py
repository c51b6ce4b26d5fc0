"""Registered on import of fesa_fairseq (fairseq does not import a user dir's criterions/ by itself)."""

from fesa_fairseq.criterions import emotion_cross_entropy  # noqa: F401
