"""Acoustic anger: feature cache, leave-one-corpus-out benchmark and fit (``train_anger_loco``); speech-rate
evaluation on real speech (``eval_rate_real``)."""
