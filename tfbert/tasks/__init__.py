"""Task heads on `BertBackbone`: each a functional Keras model built on `backbone.input`."""

from tfbert.tasks.base import BertTaskModel
from tfbert.tasks.classifier import BertClassifier
from tfbert.tasks.token_classifier import BertTokenClassifier

__all__ = ["BertTaskModel", "BertClassifier", "BertTokenClassifier"]
