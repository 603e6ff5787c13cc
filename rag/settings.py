"""Settings that persist per collection: a small JSON file in the collection's folder.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> save_settings(settings_path(folder), {"top_k": 3, "rerank": False})
    >>> load_settings(settings_path(folder))
    {'top_k': 3, 'rerank': False}

The file is `settings.json` beside the index generations (`settings_path(collection_dir)`), so a
collection carries its own top-k, reranking, temperature and model wherever it is copied. Only
the keys in `KEYS` are kept; values are checked by `rag.config` (its types, closed choices and
`RANGES`) when they are applied to a Config: `apply_settings` skips a bad value and says, in one
sentence, which setting and what range, instead of failing the app. Writes are atomic (a temporary
file, then `os.replace`), so a reader never sees half a file.

Deliberately skipped: per-user settings (the file is the collection's, shared by every session)
and locking (the last writer wins; settings are changed by hand, not in bulk).
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rag.config import Config
from rag.errors import ConfigError

SETTINGS_FILE = "settings.json"
SCHEMA = 1
# What a collection remembers: the answer-shaping settings and the model that writes its answers.
KEYS = ("top_k", "rerank", "fusion", "temperature", "llm_model", "n_gpu_layers", "n_ctx")


def settings_path(collection_dir: str | Path) -> Path:
    """Where a collection's settings live: `collection_dir`/settings.json (the index folder today)."""
    return Path(collection_dir) / SETTINGS_FILE


def load_settings(path: str | Path) -> dict[str, Any]:
    """The saved settings ({} when there is no file); a file that is not a JSON object raises ConfigError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"settings file {path} is not readable JSON: {err} (fix: correct or delete it)") from err
    if not isinstance(data, dict):
        raise ConfigError(f"settings file {path} does not hold a JSON object (fix: correct or delete it)")
    return {k: data[k] for k in KEYS if k in data}


def save_settings(path: str | Path, values: Mapping[str, Any]) -> None:
    """Write the `KEYS` of `values` (plus a schema number) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"schema": SCHEMA, **{k: values[k] for k in KEYS if k in values}}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def apply_settings(cfg: Config, values: Mapping[str, Any]) -> tuple[Config, list[str]]:
    """`cfg` with each valid saved setting applied, and one message per setting that was not.

    Each value is applied on its own, so one bad entry costs only itself.

    >>> cfg, problems = apply_settings(Config(), {"top_k": 0, "temperature": 0.5})
    >>> cfg.top_k, cfg.temperature
    (5, 0.5)
    >>> problems
    ["setting 'top_k': 0 is outside the allowed range 1 to 100; using 5"]
    """
    problems: list[str] = []
    for name in KEYS:
        if name not in values:
            continue
        try:
            cfg = cfg.with_overrides(**{name: values[name]})
        except ConfigError as err:
            problems.append(f"{err}; using {getattr(cfg, name)!r}")
        except TypeError as err:  # a list or an object where a number belongs
            problems.append(f"setting {name!r}: cannot use {values[name]!r} ({err}); using {getattr(cfg, name)!r}")
    return cfg, problems
