"""Build frozen config dataclasses from plain dicts (TOML/JSON data) with errors that name the field path.

``from_dict(Config, {"final_sparsity": 1.5}, "stages[2]")`` raises
``RecipeError("stages[2].final_sparsity must be in [0, 1)")``: unknown keys and wrong types are errors,
never ignored, and a config's own ``__post_init__`` message is prefixed with the path.
"""
from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from typing import Any, Union, get_args, get_origin, get_type_hints


class RecipeError(ValueError):
    """A recipe or config value that is wrong; the message names its path (e.g. ``stages[2].epochs``)."""


def _type_name(tp) -> str:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp))
    if origin in (tuple, list):
        return "list"
    if origin is dict:
        return "table"
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return {type(None): "none", int: "integer", float: "number", str: "string", bool: "true/false", dict: "table"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value: Any, tp, path: str):
    """Check ``value`` against annotation ``tp``; returns the value converted (lists -> tuples, ints -> floats)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        errors = []
        for arg in get_args(tp):
            try:
                return _coerce(value, arg, path)
            except RecipeError as err:
                errors.append(err)
        raise RecipeError(f"{path} must be {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value in get_args(tp):
            return value
        raise RecipeError(f"{path} must be one of {', '.join(map(repr, get_args(tp)))}; got {value!r}")
    if tp is type(None):
        if value is None:
            return None
        raise RecipeError(f"{path} must be none")
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin in (tuple, list) or tp in (tuple, list):
        if isinstance(value, dict) and _is_pairs(tp):  # {name = value, ...} for a list of (name, value) pairs
            value = list(value.items())
        if isinstance(value, (list, tuple)):
            args = get_args(tp)
            if not args:
                item_types = [Any] * len(value)
            elif origin is list or args[-1] is Ellipsis:
                item_types = [args[0]] * len(value)
            elif len(args) != len(value):
                raise RecipeError(f"{path} must be a list of {len(args)} values, got {list(value)!r}")
            else:
                item_types = list(args)
            return tuple(_coerce(v, t, f"{path}[{i}]") for i, (v, t) in enumerate(zip(value, item_types)))
    elif origin is dict or tp is dict:
        if isinstance(value, dict):
            return dict(value)
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, dict):
            return from_dict(tp, value, path)
    else:  # pragma: no cover - annotation kinds we do not use
        return value
    raise RecipeError(f"{path} must be {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _is_pairs(tp) -> bool:
    args = get_args(tp)
    return len(args) == 2 and args[1] is Ellipsis and get_origin(args[0]) is tuple and len(get_args(args[0])) == 2


def from_dict(cls, data: dict, path: str = ""):
    """Build dataclass ``cls`` from ``data``; every error names ``path.field``."""
    if not isinstance(data, dict):
        raise RecipeError(f"{path or cls.__name__} must be a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{path}." if path else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"{prefix}{unknown[0]} is not a known field; known fields: {', '.join(sorted(fields))}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise RecipeError(f"{prefix}{missing[0]} is required")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        msg = str(err)
        if msg.startswith(f"{cls.__name__}."):  # "QATConfig.preserve must ..." -> "preserve must ..."
            msg = msg[len(cls.__name__) + 1 :]
        first = msg.split(" ", 1)[0]
        # "final_sparsity must be in [0, 1)" -> "stages[2].final_sparsity must be ...", "knobs.alpha ..." -> "model.knobs.alpha ..."
        if first.rstrip(",;:").split(".", 1)[0].split("[", 1)[0] in fields:
            raise RecipeError(f"{prefix}{msg}") from None
        raise RecipeError(f"{path or cls.__name__}: {msg}") from None


def to_dict(obj) -> dict:
    """A config dataclass as plain data (tuples as lists), the inverse of :func:`from_dict`."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(obj)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string, escapes included
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__} {value!r}")


def _is_table_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def to_toml(doc: dict, header: str = "") -> str:
    """TOML text of plain data (a recipe or search space as ``tomllib`` reads it): ``header`` as comment lines, then
    top-level values, ``[sections]`` and ``[[lists of tables]]``; ``tomllib.loads`` gives ``doc`` back."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict) and not _is_table_list(v)]
    for key, value in doc.items():
        if isinstance(value, dict):
            lines += ["", f"[{_toml_key(key)}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
    for key, value in doc.items():
        if _is_table_list(value):
            for table in value:
                lines += ["", f"[[{_toml_key(key)}]]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


class Config:
    """Mixin for frozen config dataclasses: ``to_dict`` / ``from_dict`` round-trip through plain data
    (what TOML and JSON hold), with the same field-path errors as a recipe."""

    def to_dict(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: dict, path: str = ""):
        return from_dict(cls, data, path)
