"""The algorithmic tasks job (experiments/tasks.py): copy, repeat copy and associative
recall, their bit errors, the job on the run skeleton and run reports."""
