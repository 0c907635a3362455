"""Task heads on `BertBackbone`: each a functional Keras model built on `backbone.input`."""

from tfbert.tasks.classifier import BertClassifier

__all__ = ["BertClassifier"]
