"""Registered on import of fesa_fairseq."""
