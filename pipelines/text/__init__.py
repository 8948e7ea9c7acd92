"""Chinese text emotion: e5-based classifier (runtime in ``emotion``, training in ``train_emotion``)."""
