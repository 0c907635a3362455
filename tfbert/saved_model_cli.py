"""`saved_model_cli` with TF Text's ops registered, so `run` works on tfbert exports.

TF Serving bundles the TF Text ops our exports use; the stock `saved_model_cli` does not load
them. Use it exactly like saved_model_cli:

    python -m tfbert.saved_model_cli run --dir export/1 --tag_set serve \
        --signature_def serving_default --input_exprs "text=['good movie']"
"""

import sys

import tensorflow_text  # noqa: F401  (registers NormalizeUTF8, RegexSplitWithOffsets, WordpieceTokenize...)
from tensorflow.python.tools import saved_model_cli

if __name__ == "__main__":
    sys.argv[0] = "saved_model_cli"
    sys.exit(saved_model_cli.main())
