"""Both directions between this plugin and Hugging Face ``transformers``.

``import_hf``: a transformers HuBERT or wav2vec 2.0 snapshot becomes a fairseq HuBERT checkpoint (``fesa import-hf``).
``export_hf``: a fine-tuned classifier becomes a folder transformers loads (``fesa export --hf``).
``weights`` and ``config`` map tensor names and settings and need neither transformers nor a model. transformers and
safetensors (the ``[hf]`` extra) are imported inside the functions that need them, never on ``import fesa_fairseq``.
"""
