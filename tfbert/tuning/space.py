"""The search space: which recipe fields a search may set, and their ranges, choices or fixed values
(`ParamSpec`), read from a YAML file over the default space."""

from __future__ import annotations

import dataclasses
from typing import Any

import keras_tuner

from tfbert.training.run_config import LR_SCHEDULES, read_yaml_mapping

# The recipe fields a search space may set; the data, model and output fields stay as the flags say.
TUNABLE_FIELDS = ("learning_rate", "warmup_ratio", "weight_decay", "batch_size", "epochs", "dropout",
                  "layerwise_lr_decay", "max_seq_length", "gradient_accumulation_steps", "lr_scheduler_type",
                  "max_grad_norm")
_FIELD_TYPES = {"learning_rate": float, "warmup_ratio": float, "weight_decay": float, "batch_size": int,
                "epochs": int, "dropout": float, "layerwise_lr_decay": float, "max_seq_length": int,
                "gradient_accumulation_steps": int, "lr_scheduler_type": str, "max_grad_norm": float}
_FIELD_NAMES = {"lr_scheduler_type": LR_SCHEDULES}  # the values a field of names may take

DEFAULT_SEARCH_SPACE: dict[str, Any] = {
    "learning_rate": {"type": "float", "min": 2e-5, "max": 2e-4, "sampling": "log"},
    "warmup_ratio": {"type": "float", "min": 0.0, "max": 0.2},
    "weight_decay": {"type": "float", "min": 0.0, "max": 0.1},
    "batch_size": {"type": "choice", "values": [16, 32]},
    "dropout": {"type": "float", "min": 0.0, "max": 0.2},
    "epochs": {"type": "int", "min": 1, "max": 3},
    "layerwise_lr_decay": {"type": "float", "min": 0.8, "max": 1.0},
}


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One search-space entry: a float/int range, a choice among values, or a fixed value."""

    name: str
    kind: str  # float | int | choice | fixed
    min: float | None = None
    max: float | None = None
    step: float | None = None
    sampling: str = "linear"
    values: tuple = ()
    default: Any = None

    def declare(self, hp: keras_tuner.HyperParameters):
        """Registers the entry with KerasTuner; returns the trial's value."""
        if self.kind == "float":
            return hp.Float(self.name, self.min, self.max, step=self.step, sampling=self.sampling,
                            default=self.default)
        if self.kind == "int":
            return hp.Int(self.name, int(self.min), int(self.max), step=int(self.step) if self.step else None,
                          sampling=self.sampling, default=self.default)
        if self.kind == "choice":
            return hp.Choice(self.name, list(self.values), default=self.default)
        return hp.Fixed(self.name, self.values[0])

    def describe(self) -> str:
        """The entry in a few words: "the space: 1 to 3", "the space: one of 16, 32", "the space: 0.1"."""
        if self.kind == "fixed":
            return f"the space: {self.values[0]}"
        if self.kind == "choice":
            return f"the space: one of {', '.join(map(str, self.values))}"
        return f"the space: {self.min:g} to {self.max:g}" + (f", {self.sampling}" if self.sampling != "linear" else "")

    def to_yaml(self) -> Any:
        if self.kind == "fixed":
            return self.values[0]
        entry = {"type": self.kind}
        if self.kind == "choice":
            entry["values"] = list(self.values)
        else:
            entry.update(min=self.min, max=self.max)
            if self.step is not None:
                entry["step"] = self.step
            if self.sampling != "linear":
                entry["sampling"] = self.sampling
        if self.default is not None:
            entry["default"] = self.default
        return entry

    @property
    def largest(self):
        return max(self.values) if self.values else self.max

    @property
    def extremes(self) -> tuple:
        """The values that bound what a trial may take: each fixed value or choice, else both ends of the
        range (as integers for an int range)."""
        if self.kind in ("fixed", "choice"):
            return self.values
        return (int(self.min), int(self.max)) if self.kind == "int" else (self.min, self.max)


def parse_search_space(entries: dict, source: str = "search space") -> dict[str, ParamSpec]:
    """Checks and converts `{field: entry}` (see the README's YAML format) to `ParamSpec`s.

    An entry is a mapping with `type` float | int | choice | fixed (float and int: `min`, `max`,
    optional `step`, `sampling` linear | log | reverse_log; choice: `values`; fixed: `value`;
    any: `default`), or a bare value, which is fixed. `null` removes the field from the search
    (the flag's value is used).

    Raises:
        ValueError: naming `source` and the key: unknown field, unknown or missing entry keys,
            values of the wrong type, an empty choice, min >= max, log sampling from <= 0.
    """
    if not isinstance(entries, dict):
        raise ValueError(f"{source}: expected a mapping of field: entry, found {type(entries).__name__}")
    space: dict[str, ParamSpec] = {}
    for name, entry in entries.items():
        where = f"{source}: {name}"
        if name not in TUNABLE_FIELDS:
            raise ValueError(f"{where}: not a tunable field; tunable: {', '.join(TUNABLE_FIELDS)}")
        if entry is None:
            continue
        kind_of_field = _FIELD_TYPES[name]
        if not isinstance(entry, dict):
            entry = {"type": "fixed", "value": entry}
        kind = entry.get("type")
        allowed = {"float": {"type", "min", "max", "step", "sampling", "default"},
                   "int": {"type", "min", "max", "step", "sampling", "default"},
                   "choice": {"type", "values", "default"}, "fixed": {"type", "value"}}
        if not isinstance(kind, str) or kind not in allowed:
            raise ValueError(f"{where}: 'type' must be float | int | choice | fixed, found {kind!r}")
        unknown = sorted(set(entry) - allowed[kind])
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(map(str, unknown))} for type {kind}; "
                             f"allowed: {', '.join(sorted(allowed[kind]))}")

        def checked(key, value, as_type):
            if as_type is str:  # a field of names: one of its names
                if value not in _FIELD_NAMES[name]:
                    raise ValueError(f"{where}: '{key}' must be one of {', '.join(_FIELD_NAMES[name])}, "
                                     f"found {value!r}")
                return value
            try:
                if isinstance(value, bool):
                    raise ValueError
                # YAML reads 1e-5 (no dot) as a string; float() reads it.
                converted = as_type(float(value)) if as_type is int else float(value)
                if as_type is int and converted != float(value):
                    raise ValueError
                return converted
            except (TypeError, ValueError):
                expected = "an integer" if as_type is int else "a number"
                raise ValueError(f"{where}: '{key}' must be {expected} (the field {name} is "
                                 f"{as_type.__name__}), found {value!r}") from None

        if kind == "fixed":
            if "value" not in entry:
                raise ValueError(f"{where}: a fixed entry needs 'value'")
            space[name] = ParamSpec(name, "fixed", values=(checked("value", entry["value"], kind_of_field),))
            continue
        if kind == "choice":
            values = entry.get("values")
            if not isinstance(values, list) or not values:
                raise ValueError(f"{where}: 'values' must be a non-empty list, found {values!r}")
            values = tuple(checked("values", v, kind_of_field) for v in values)
            if len(set(values)) != len(values):
                raise ValueError(f"{where}: 'values' has duplicates: {list(values)}")
            default = checked("default", entry["default"], kind_of_field) if "default" in entry else None
            if default is not None and default not in values:
                raise ValueError(f"{where}: 'default' {default!r} is not one of 'values' {list(values)}")
            space[name] = ParamSpec(name, "choice", values=values, default=default)
            continue
        as_type = int if kind == "int" else float
        if kind_of_field is str:
            raise ValueError(f"{where}: the field {name} takes names ({', '.join(_FIELD_NAMES[name])}); "
                             "use type choice or fixed")
        if as_type is not kind_of_field:
            raise ValueError(f"{where}: the field {name} is {'an integer' if kind_of_field is int else 'a float'}; "
                             f"use type {'int' if kind_of_field is int else 'float'} or choice")
        for key in ("min", "max"):
            if key not in entry:
                raise ValueError(f"{where}: a {kind} entry needs 'min' and 'max'")
        low, high = checked("min", entry["min"], as_type), checked("max", entry["max"], as_type)
        if not low < high:
            raise ValueError(f"{where}: 'min' must be below 'max', found min={low!r}, max={high!r}")
        sampling = entry.get("sampling", "linear")
        if sampling not in ("linear", "log", "reverse_log"):
            raise ValueError(f"{where}: 'sampling' must be linear | log | reverse_log, found {sampling!r}")
        if sampling != "linear" and low <= 0:
            raise ValueError(f"{where}: {sampling} sampling needs 'min' > 0, found {low!r}")
        step = checked("step", entry["step"], as_type) if entry.get("step") is not None else None
        if step is not None and sampling == "linear" and step <= 0:
            raise ValueError(f"{where}: 'step' must be > 0, found {step!r}")
        if step is not None and sampling != "linear" and step <= 1:
            raise ValueError(f"{where}: 'step' must be > 1 with {sampling} sampling (a factor between values), "
                             f"found {step!r}")
        default = checked("default", entry["default"], as_type) if "default" in entry else None
        if default is not None and not low <= default <= high:
            raise ValueError(f"{where}: 'default' {default!r} is outside [{low!r}, {high!r}]")
        space[name] = ParamSpec(name, kind, low, high, step, sampling, default=default)
    return space


def load_search_space(path: str | None = None) -> dict[str, ParamSpec]:
    """The default search space, with the entries of the YAML file at `path` replacing it key by key.

    Raises:
        ValueError: the file is missing or not valid YAML, or an entry is wrong (the message
            names the file and the key).
    """
    entries = dict(DEFAULT_SEARCH_SPACE)
    if path:
        overrides = read_yaml_mapping(path, "search space", "field: entry")
        parse_search_space(overrides, path)  # errors name the file
        entries.update(overrides)
    return parse_search_space(entries, path or "default search space")
