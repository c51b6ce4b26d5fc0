"""Registered on import of fesa_fairseq."""

from fesa_fairseq.tasks import emotion_hubert_pretraining, speech_emotion_classification  # noqa: F401
