"""Fusion fit (``train_fusion``) and the escalation evaluations on CPED (``eval_cped``) and EmoDB calls."""
