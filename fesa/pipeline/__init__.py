"""The method as an experiment: config, plan of stages, evaluation, reference, report, SLURM (top layer)."""
