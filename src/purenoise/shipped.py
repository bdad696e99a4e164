"""The configs that ship with purenoise, as package data, found by name.

``purenoise train --config fmnist_lt_r100/open`` works from any folder after ``pip install``: a
``--config`` that is not an existing file is looked up among the shipped configs
(``<setting>/<method>``, with or without ``.yaml``). In a clone, ``configs/`` at the top of the
repository is the same folder. ``purenoise configs`` lists them.
"""
from __future__ import annotations

import difflib
from pathlib import Path

from purenoise.errors import ConfigError

__all__ = ["CONFIG_DIR", "list_configs", "resolve_config"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def list_configs() -> list[str]:
    """Names of the shipped configs (``<setting>/<method>``), sorted; the ``_base`` files excluded."""
    if not CONFIG_DIR.is_dir():
        return []
    return sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml")
                  if not p.relative_to(CONFIG_DIR).parts[0].startswith("_"))


def resolve_config(spec: str | Path) -> Path:
    """The file of a ``--config``: an existing path as given, else the shipped config of that name.

    Raises:
        ConfigError: Neither a file nor a shipped config; names the closest shipped ones.
    """
    path = Path(spec)
    if path.is_file():
        return path
    name = str(spec).removesuffix(".yaml").removeprefix("configs/")
    candidate = (CONFIG_DIR / f"{name}.yaml").resolve()
    if CONFIG_DIR in candidate.parents and candidate.is_file() and not Path(name).is_absolute():
        return candidate
    close = difflib.get_close_matches(name, list_configs(), n=3, cutoff=0.5)
    hint = f" Closest shipped configs: {', '.join(close)}." if close else ""
    what = f"config file {spec} does not exist" if str(spec).endswith((".yaml", ".yml")) or path.is_absolute() \
        else f"config {str(spec)!r}: no such file"
    raise ConfigError(f"{what}, and no shipped config has that name (`purenoise configs` lists them).{hint}")
