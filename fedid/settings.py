"""One parser for settings: a frozen dataclass built from a flat key-value mapping.

Run config (``flwr run --run-config``, pyproject ``[tool.flwr.app.config]``), node config
(``--node-config``), the simulation file and TOML files all arrive as flat mappings with
kebab-case keys whose values may be TOML/JSON typed or strings. :func:`parse_settings`
turns one into a settings dataclass in one place, with one rule per type:

- ``bool``: ``true``/``false`` (a boolean, or the strings in any case); nothing else;
- ``int``: an integer, or a float or string holding an integer (never a boolean);
- ``float``: a finite number, or a string holding one (never a boolean);
- ``str``; ``Path`` (a string or path; an empty string is ``None`` for ``Path | None``).
  ``X | None`` takes ``None`` or an empty string as ``None``, anything else by ``X``'s rule.

A field reads key ``name`` with ``_`` as ``-`` unless its metadata says otherwise
(``field(metadata=setting(...))``): ``key=`` another key, ``parse=`` a function
``(key, value) -> value``, ``prefix=`` collects every ``prefix*`` key into a
``dict[str, float]`` (or, with ``parse=``, hands ``parse(prefix, {key: value})`` every
``prefix*`` key, even none, to build a nested settings group). A field without a
default is required; every missing one is named in one error. Unknown keys are errors (a
typo is not silently ignored). Range and choice rules stay in the dataclass's
``__post_init__``. Every error is a
:class:`fedid.errors.ConfigError` naming the key, the rule and the observed value.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fedid.errors import ConfigError

__all__ = ["parse_bool", "parse_float", "parse_settings", "setting"]

T = TypeVar("T")
_MISSING = dataclasses.MISSING


def setting(
    *,
    key: str | None = None,
    parse: Callable[[str, Any], Any] | None = None,
    prefix: str | None = None,
) -> dict[str, Any]:
    """Field metadata for :func:`parse_settings`: ``field(..., metadata=setting(...))``."""
    return {"key": key, "parse": parse, "prefix": prefix}


def parse_bool(key: str, value: Any) -> bool:
    """``True``/``False`` or the strings ``"true"``/``"false"`` (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"{key} must be true or false. Got {value!r}.")


def _parse_int(key: str, value: Any) -> int:
    if not isinstance(value, bool):
        try:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, int) or (isinstance(number, float) and number.is_integer()):
                return int(number)
        except ValueError:
            pass
    raise ConfigError(f"{key} must be an integer. Got {value!r}.")


def parse_float(key: str, value: Any) -> float:
    """A finite number, or a string holding one (never a boolean)."""
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if math.isfinite(number):
                return number
    raise ConfigError(f"{key} must be a finite number. Got {value!r}.")


def _parse_str(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{key} must be a string. Got {value!r}.")


def _parse_path(key: str, value: Any) -> Path:
    return Path(value if isinstance(value, os.PathLike) else _parse_str(key, value))


_PARSERS: dict[Any, Callable[[str, Any], Any]] = {
    bool: parse_bool, int: _parse_int, float: parse_float, str: _parse_str, Path: _parse_path,
}


def _parser(key: str, hint: Any) -> Callable[[str, Any], Any]:
    if hint in _PARSERS:
        return _PARSERS[hint]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) and len(args) == 2 and type(None) in args:
        inner = _parser(key, next(a for a in args if a is not type(None)))
        return lambda k, v: None if v in (None, "") else inner(k, v)
    raise TypeError(f"setting {key}: no parser for type {hint!r}; give one with parse=")


def parse_settings(cls: type[T], raw: Mapping[str, Any], *, what: str) -> T:
    """Build dataclass ``cls`` from ``raw``; ``what`` names the source in errors."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    used: set[str] = set()
    missing: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        prefix = f.metadata.get("prefix")
        if prefix:
            found = {k: v for k, v in raw.items() if k.startswith(prefix)}
            used |= set(found)
            group = f.metadata.get("parse")
            kwargs[f.name] = group(prefix, found) if group else {
                k[len(prefix):]: parse_float(k, v) for k, v in found.items()}
            continue
        key = f.metadata.get("key") or f.name.replace("_", "-")
        if key not in raw:
            if f.default is _MISSING and f.default_factory is _MISSING:
                missing.append(key)
            continue
        used.add(key)
        parse = f.metadata.get("parse") or _parser(key, hints[f.name])
        kwargs[f.name] = parse(key, raw[key])
    if missing:
        raise ConfigError(f"{what}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'}"
                          " required. Got no value.")
    unknown = sorted(set(raw) - used)
    if unknown:
        raise ConfigError(f"{what}: unknown key(s) {unknown}.")
    return cls(**kwargs)
