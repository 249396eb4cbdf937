"""The character-level language-model job (experiments/alice.py): text, lanes, its config,
the job on the run skeleton, evaluation, sampling and restoring."""
