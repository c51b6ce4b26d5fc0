"""Registered on import of fesa_fairseq."""

from fesa_fairseq.models import emotion_hubert, hubert_emotion_classifier  # noqa: F401
