"""Hyperparameter sweeps of the char-LM job with Optuna (experiments/sweep.py), and vmapped
populations of trials trained as one program."""
