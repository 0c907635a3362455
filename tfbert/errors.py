"""The errors tfbert raises for bad user input; each message names the file, line or field."""

from tfbert.checkpoints.mapping import CheckpointError
from tfbert.config import ConfigError
from tfbert.data.readers import DataError
from tfbert.export import ExportError
from tfbert.text.tokenizer import TokenizerError

# What a command-line pipeline reports as one clean line instead of a traceback.
USER_ERRORS = (CheckpointError, ConfigError, DataError, ExportError, TokenizerError)

__all__ = ["CheckpointError", "ConfigError", "DataError", "ExportError", "TokenizerError", "USER_ERRORS"]
