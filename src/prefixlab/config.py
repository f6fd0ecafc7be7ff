"""Flat, frozen, typed configurations; each round-trips through a plain dict.

The workflow hands every job exactly the config subtree it depends on; these classes
turn such a subtree into typed values and reject what does not fit, naming the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any



class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the key."""


class FieldError(ConfigError):
    """A check inside a config class; `build` prefixes the key with where the class sits."""

    def __init__(self, key: str, msg: str):
        super().__init__(f"{key}: {msg}")
        self.key, self.msg = key, msg


def check(cond: bool, key: str, msg: str) -> None:
    """The one form of a validity check: `key` is relative to the config class it guards.

    Every check of a job's config runs in `settings.resolve` too (through the same
    classes and job parsers), so a dry run catches it before any job starts."""
    if not cond:
        raise FieldError(key, msg)


def require(data: Any, keys: tuple[str, ...], where: str) -> None:
    """Structural check of a job dict (the workflow always writes these keys)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")


def build(cls, data: dict[str, Any], where: str):
    """A frozen config object from a plain dict; errors name `where`.<key>."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}.{f.name}: missing required key")
            continue
        value = data[f.name]
        if isinstance(value, list):
            value = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        kwargs[f.name] = value
    try:
        obj = cls(**kwargs)
    except FieldError as err:
        raise ConfigError(f"{where}.{err.key}: {err.msg}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from None
    return obj


def positive_ints(obj, keys) -> None:
    for k in keys:
        check(isinstance(getattr(obj, k), int) and getattr(obj, k) >= 1, k, "must be a positive integer")


def as_config_key(parse, *args) -> None:
    """Run a config parser; its error "key: problem" becomes "config key 'key': problem"."""
    try:
        parse(*args)
    except ConfigError as err:
        key, _, msg = str(err).partition(": ")
        raise ConfigError(f"config key '{key}': {msg}") from None


def check_defined(name: str, defined, key: str, what: str) -> None:
    """ConfigError at config key `key` unless `name` is one of the `defined` names."""
    if name not in defined:
        raise ConfigError(f"config key '{key}': unknown {what} {name!r}; defined: {sorted(defined)}")
