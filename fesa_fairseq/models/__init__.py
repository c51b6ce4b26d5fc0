"""Registered on import of fesa_fairseq."""

from fesa_fairseq.models import hubert_emotion_classifier  # noqa: F401
