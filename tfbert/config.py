"""`BertConfig`: the architecture of a BERT encoder, read from and written to a
Hugging Face `config.json` (or an original Google `bert_config.json`)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from tfbert import fileio
from tfbert.errors import TfbertError

# Activations we implement exactly as transformers' ACT2FN does.
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu", "silu", "swish", "tanh")

class ConfigError(TfbertError):
    """A config file or field that tfbert cannot build a model from."""


@dataclasses.dataclass
class BertConfig:
    """Architecture hyper-parameters of a BERT encoder.

    Field names are those of transformers' `BertConfig`, so a Hugging Face
    `config.json` maps one to one.

    Example:
        >>> cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                  num_attention_heads=2, intermediate_size=64)
        >>> BertConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "BertConfig") -> None:
        """Raises `ConfigError` naming the field when a value cannot be built."""
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{source}: field '{name}' must be a positive integer, found {value!r}")
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"{source}: 'hidden_size' ({self.hidden_size}) must be a multiple of "
                f"'num_attention_heads' ({self.num_attention_heads})")
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise ConfigError(f"{source}: field 'hidden_act' is {self.hidden_act!r}; supported: "
                              f"{', '.join(SUPPORTED_ACTIVATIONS)}")
        if self.position_embedding_type != "absolute":
            raise ConfigError(f"{source}: field 'position_embedding_type' is {self.position_embedding_type!r}; "
                              "only 'absolute' position embeddings (as in BERT) are supported")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise ConfigError(f"{source}: field '{name}' must be in [0, 1), found {value!r}")
        if not isinstance(self.layer_norm_eps, (int, float)) or self.layer_norm_eps <= 0:
            raise ConfigError(f"{source}: field 'layer_norm_eps' must be positive, found {self.layer_norm_eps!r}")

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # ---- dict / json ----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "BertConfig":
        """Builds a config from a HF/Google config dict.

        Raises:
            ConfigError: for a non-BERT `model_type`, an unknown key that would change the
                computation, or an unsupported value. The message names `source` and the field.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, found {type(data).__name__}")
        model_type = data.get("model_type", "bert")
        if model_type != "bert":
            raise ConfigError(f"{source}: field 'model_type' is {model_type!r}; tfbert builds 'bert' models only")
        if data.get("is_decoder") or data.get("add_cross_attention"):
            raise ConfigError(f"{source}: decoder / cross-attention BERT configs are not supported")
        # Other keys (architectures, id2label, transformers_version, ...) are bookkeeping
        # that does not change the encoder's computation.
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {key: value for key, value in data.items() if key in fields}
        config = cls.__new__(cls)
        defaults = cls()
        for f in dataclasses.fields(cls):
            setattr(config, f.name, kwargs.get(f.name, getattr(defaults, f.name)))
        try:
            config.validate(source)
        except ConfigError as e:  # a value the file does not give is BERT-base's: say so
            absent = [f"'{name}' is not given (BERT-base's {getattr(defaults, name)!r} was taken)"
                      for name in sorted(fields - set(kwargs)) if f"'{name}'" in str(e)]
            if not absent:
                raise
            raise ConfigError(f"{e}; {'; '.join(absent)}") from None
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> "BertConfig":
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: {fileio.json_position(e)}: not valid JSON ({e.msg})") from None
        return cls.from_dict(data, source=path)

    def to_hf_dict(self) -> dict[str, Any]:
        """The config as transformers writes it for a `BertModel`."""
        data = self.to_dict()
        data.update({"model_type": "bert", "architectures": ["BertModel"]})
        return data

    def save_json(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_hf_dict(), f, indent=2, sort_keys=True)
            f.write("\n")
