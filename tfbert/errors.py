"""The base of every error tfbert raises for bad user input.

This module imports nothing of tfbert, so a command-line script (or the REST client, which must not
load TensorFlow) can catch `TfbertError` without importing the modules that raise it. Each module
defines its own subclass next to the code that raises it (`tfbert.config.ConfigError`,
`tfbert.data.readers.DataError`, `tfbert.checkpoints.CheckpointError`, `tfbert.export.ExportError`,
`tfbert.text.TokenizerError`, ...), and each message names the file, line or field, what was expected
and what was found.
"""


class TfbertError(ValueError):
    """Bad user input (a file, a field, a flag): the message says where and what to do.

    A `ValueError`, so code that caught the old per-module errors as `ValueError` still does.
    """


# What a command-line pipeline reports as one clean line instead of a traceback.
USER_ERRORS = (TfbertError,)

__all__ = ["TfbertError", "USER_ERRORS"]
