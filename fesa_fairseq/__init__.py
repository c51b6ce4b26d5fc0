"""fesa_fairseq: Frame-level Emotional State Alignment for speech emotion recognition, as a fairseq user dir.

Importing this package (``import fesa_fairseq`` or ``common.user_dir=/abs/path/to/fesa_fairseq``) registers
every task, model and criterion of the plugin, and lets torch >= 2.6 load fairseq checkpoints.
"""

from fesa_fairseq.checkpoint_compat import allow_fairseq_checkpoints

allow_fairseq_checkpoints()

# fairseq imports a user dir's tasks/ and models/ by itself but not criterions/: import all three here.
from fesa_fairseq import criterions, models, tasks  # noqa: E402,F401

__version__ = "0.1.0"
