"""In-graph text processing: HF-identical BERT normalisation, WordPiece, input packing."""

from tfbert.text.tokenizer import BertTokenizer, TokenizerError, longest_first_lengths, read_vocab

__all__ = ["BertTokenizer", "TokenizerError", "longest_first_lengths", "read_vocab"]
