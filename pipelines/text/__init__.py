"""Chinese text emotion: e5-based classifier (``emotion``; trained by ``training.text.train_emotion``)."""
