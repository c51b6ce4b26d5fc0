"""Corpora in their raw layouts -> fold manifests: IEMOCAP and the synthetic demo corpus (bottom layer)."""
