"""fesa: the command line of fesa_fairseq, and what it needs before any model is loaded.

Nothing here imports torch or fairseq at import time, so that ``fesa --help`` and ``fesa COMMAND --help`` answer
at once: ``fesa.errors`` (the exceptions every layer raises), ``fesa.options`` (the options of the components,
each default defined once, read by both the components and the command line) and ``fesa.cli`` (the commands,
which import the plugin ``fesa_fairseq`` only when they run). The plugin itself is ``fesa_fairseq``: importing it
registers its fairseq tasks, models and criterions (``common.user_dir``), which needs torch and fairseq.
"""
