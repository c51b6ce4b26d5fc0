"""Inference on any recording: utterance and frame-level emotion (recognizer), segments, and their scoring (EDER)."""
