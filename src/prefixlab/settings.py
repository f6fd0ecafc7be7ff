"""Workflow configuration: scale overrides, schema validation with key-naming errors,
and every job's own checks run at resolution (the per-job subtrees the rules pass to the
CLI are built by each paper's jobs.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from prefixlab.coins import jobs as coins_jobs
from prefixlab.config import ConfigError
from prefixlab.sorting import jobs as sorting_jobs


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _schema_errors(config: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema)
    msgs = []
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "additionalProperties" and err.instance is not None and isinstance(err.instance, dict):
            allowed = set(err.schema.get("properties", {}))
            extra = sorted(set(err.instance) - allowed) if allowed else []
            msgs.append(f"config key '{_key(err.absolute_path)}': unknown key(s) {extra}" if extra else
                        f"config key '{_key(err.absolute_path)}': {err.message}")
        elif err.validator == "enum":
            msgs.append(f"config key '{_key(err.absolute_path)}': {err.instance!r} is not one of {err.validator_value}")
        elif err.validator == "type" and isinstance(err.instance, str):
            # Snakemake's --config key={a: 5} hands nested values over as text
            msgs.append(f"config key '{_key(err.absolute_path)}': {err.message} (a nested value given as "
                        "--config key={...} arrives as text: put it in a YAML file and pass --configfile FILE)")
        else:
            msgs.append(f"config key '{_key(err.absolute_path)}': {err.message}")
    return msgs


def _fill_defaults(config: dict, schema: dict) -> None:
    for k, sub in schema.get("properties", {}).items():
        if k not in config and "default" in sub:
            config[k] = copy.deepcopy(sub["default"])


def resolve(config: dict, schema_path: str | Path) -> dict:
    """Validate the raw config, apply the chosen scale and validate the result.

    Raises ConfigError naming the offending key.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = _schema_errors(config, schema)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    scale = config["scale"]
    scales = config.get("scales", {})
    resolved = {k: v for k, v in config.items() if k != "scales"}
    if scale != "paper":
        if scale not in scales:
            raise ConfigError(f"config key 'scale': unknown scale {scale!r}; defined: ['paper'] + {sorted(scales)}")
        resolved = deep_merge(resolved, scales[scale])
    _fill_defaults(resolved, schema)
    errors = _schema_errors(resolved, schema)
    if errors:
        raise ConfigError(f"invalid configuration at scale {scale!r}:\n  " + "\n  ".join(errors))
    check_jobs(resolved)
    return resolved


def check_jobs(cfg: dict) -> None:
    """Every check a job makes of its config, made now for every job of the run (each
    paper's jobs.check_config): a bad value stops the dry run instead of a job hours into
    the run, and the error names the config key."""
    coins_jobs.check_config(cfg)
    sorting_jobs.check_config(cfg)
