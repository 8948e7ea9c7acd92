"""Acoustic anger model fitting (``train_anger``) and the speech-rate evaluation (``eval_rate``)."""
