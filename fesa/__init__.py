"""fesa: the application on top of the fairseq plugin ``fesa_fairseq``.

Corpora, labels, inference, the Hugging Face bridge, the pipeline (``fesa run``), statistics, plots and the command
line. The plugin is what fairseq loads (``common.user_dir``) and imports nothing of this package.

Importing ``fesa`` imports nothing else: ``fesa.errors``, ``fesa.options``, ``fesa.stop`` and ``fesa.cli`` import torch,
fairseq and the plugin only when a command runs, so that ``fesa --help`` and ``fesa COMMAND --help`` answer at once.
"""
