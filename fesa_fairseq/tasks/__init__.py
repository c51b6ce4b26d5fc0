"""Registered on import of fesa_fairseq."""

from fesa_fairseq.tasks import speech_emotion_classification  # noqa: F401
