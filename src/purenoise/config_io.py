"""Reading config files: bounded YAML, ``base`` inheritance, and messages that quote nothing unsafe.

A config file may come from someone else, so reading one is bounded before any of it is built:
a file must be a regular file of at most :data:`MAX_CONFIG_BYTES` (not a device such as
``/dev/zero``, a pipe or a folder); a config reads at most :data:`MAX_CONFIG_FILES` files with
its bases; its YAML nests at most :data:`MAX_YAML_DEPTH` levels deep and holds at most
:data:`MAX_YAML_NODES` values once its aliases are expanded (a few hundred bytes of nested
aliases, the "billion laughs", would otherwise expand to billions of values); and an alias may
not contain itself. A file that is not a mapping of config key names is said to be no purenoise
config without quoting it, so that pointing ``base`` at any readable file does not print it.
"""
from __future__ import annotations

import copy
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from purenoise.errors import ConfigError

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_FILES", "MAX_YAML_NODES", "MAX_YAML_DEPTH", "load_yaml",
           "load_config_file", "merge", "not_plain", "shown"]

#: Largest config file read, in bytes; a real config is a few kilobytes.
MAX_CONFIG_BYTES = 1 << 20
#: Most values (scalars, lists, mappings) one YAML text may hold once its aliases are expanded.
MAX_YAML_NODES = 10_000
#: Most files one config reads with its bases.
MAX_CONFIG_FILES = 32
#: Deepest nesting of lists and mappings in one YAML text.
MAX_YAML_DEPTH = 64

_KEY_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: safe to print, whatever the value holds.

    ``repr`` escapes control characters, so a value cannot move the cursor or recolour the
    terminal, and the cut keeps a long value from flooding the message.
    """
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _plain_text(text: str, limit: int = 120) -> str:
    """``text`` with control characters escaped, cut to ``limit`` characters (a parser's message)."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``1e-4`` as a number as YAML 1.2 does, with bounded nesting.

    YAML 1.1 (PyYAML) needs a dot in a float's mantissa, so ``lr: 1e-4`` or ``--set lr=1e-4``
    would be the string '1e-4' and fail type checking for no reason a user can see. Nesting is
    counted while composing, so a deeply nested text stops before Python's recursion limit.
    """

    source = "the YAML text"
    _depth = 0
    _nodes = 0

    def compose_node(self, parent, index):  # noqa: D102 (PyYAML's method, nodes and depth counted)
        self._depth += 1
        self._nodes += 1
        try:
            if self._nodes > MAX_YAML_NODES:
                raise ConfigError(_too_many(self.source))
            if self._depth > MAX_YAML_DEPTH:
                raise ConfigError(f"{self.source} nests lists or mappings more than {MAX_YAML_DEPTH} levels deep; "
                                  "a purenoise config is a flat mapping of keys and values")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def _too_many(source: str) -> str:
    return (f"{source} holds more than {MAX_YAML_NODES} values (counting each use of a YAML alias *name as "
            "a copy of what it refers to); a purenoise config is a few dozen keys: write its values out")


def _check_graph(root: yaml.Node, source: str) -> None:
    """Refuse a composed YAML graph that aliases expand past :data:`MAX_YAML_NODES` or into a loop.

    Aliases make the graph share nodes; the walk visits a shared node once per reference, as the
    built value would be walked later, so its count is the size of the expanded value.
    """
    count, on_path, todo = 0, set(), [(root, False)]
    while todo:
        node, leaving = todo.pop()
        if leaving:
            on_path.discard(id(node))
            continue
        if id(node) in on_path:
            raise ConfigError(f"{source}: a YAML alias refers to a list or mapping that contains it (like "
                              "'a: &a [*a]'), which makes an endless value; write the value out instead")
        count += 1
        if count > MAX_YAML_NODES:
            raise ConfigError(_too_many(source))
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            continue
        on_path.add(id(node))
        todo.append((node, True))
        todo.extend((child, False) for child in reversed(children))


def load_yaml(text: str, source: str) -> Any:
    """The value of a YAML text, read with a safe loader and bounded (see the module's notes).

    Args:
        text: The YAML text.
        source: What it is, for messages (a file name, ``--set key=value``).

    Raises:
        ConfigError: Too deep, too large once aliases are expanded, or an alias that contains itself.
        yaml.YAMLError: Not valid YAML (the caller adds the file and line).
    """
    loader = _Loader(text)
    loader.source = source
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _read_text(path: Path) -> str:
    """The text of config file ``path``: a regular file of at most :data:`MAX_CONFIG_BYTES`.

    The file is opened without blocking (a named pipe would otherwise wait for a writer) and
    checked once open, so what is checked is what is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"{path} is not a regular file (it is a folder, device or pipe), so it is not a "
                          "purenoise config; give a YAML config file")
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path} is larger than {MAX_CONFIG_BYTES // 1024} KiB, so it is not a purenoise config "
                          "(a config is a few dozen keys); give a YAML config file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text, so it is not a purenoise config; give a YAML config "
                          "file") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping of config file ``path``; its content is quoted only where it is a key name."""
    text = _read_text(path)
    try:
        data = load_yaml(text, str(path))
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"YAML syntax error in {path}{line}: {_plain_text(str(e.problem or 'invalid YAML'))}; "
                          "is it a purenoise config?") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path} is not valid YAML, so it is not a purenoise config") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as e:
        # PyYAML's constructors raise these for values that look typed but are not valid, e.g.
        # the date 2020-02-30 or "!!int x"; they carry no line number.
        raise ConfigError(
            f"a value in {path} cannot be read as YAML ({type(e).__name__}); quote it if it is meant as "
            f"text, e.g. name: '2020-02-30'"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and _KEY_NAME.fullmatch(k) for k in data):
        what = "a mapping whose keys are not key names" if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{path} is not a purenoise config: a config is a YAML mapping of key names "
                          f"(lr: 0.1, model: resnet32, ...), this file holds {what}")
    return data


def merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; ``*_options`` mappings merge key by key."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        if k.endswith("_options") and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **copy.deepcopy(v)}
        else:
            out[k] = copy.deepcopy(v)
    return out


def load_config_file(path: Path, stack: tuple[Path, ...] = (), reads: list[int] | None = None) -> dict[str, Any]:
    """The raw mapping of a config file with its ``base`` files merged in (not validated).

    At most :data:`MAX_CONFIG_FILES` files are read in all: bases that name the same files many
    times over would otherwise multiply the reads level by level.
    """
    reads = [0] if reads is None else reads
    reads[0] += 1
    if reads[0] > MAX_CONFIG_FILES:
        raise ConfigError(f"{stack[0]} reads more than {MAX_CONFIG_FILES} config files through its 'base' "
                          f"keys (at {path}); name each base once")
    try:
        path = path.resolve()
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        where = f" (base of {stack[-1]})" if stack else ""
        raise ConfigError(f"config path {shown(str(path))}{where} is not a usable file name: {e}") from None
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"config inheritance loops: {chain}")
    data = _read_yaml(path)
    bases = data.pop("base", None)
    if bases is None:
        return data
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"'base' in {path} must be a path or a list of paths, got {shown(bases)}")
    merged: dict[str, Any] = {}
    for b in bases:
        merged = merge(merged, load_config_file(path.parent / b, (*stack, path), reads))
    return merge(merged, data)


_PLAIN = (type(None), bool, int, float, str)


def not_plain(value: Any, where: str, budget: list[int] | None = None, depth: int = 0) -> tuple[str, Any] | None:
    """``(key path, value)`` of the first entry that is not plain data (null, bool, number, string,
    list or mapping), else ``None``. Checkpoints store the config and load only plain data, so a
    YAML date or set would otherwise fail at the first checkpoint, after an epoch of training.

    A value from a mapping (a checkpoint's config) rather than a file is bounded here as a file is
    when read: at most ``MAX_YAML_NODES`` entries, ``MAX_YAML_DEPTH`` levels (a list that holds
    itself is endlessly deep)."""
    budget = [MAX_YAML_NODES] if budget is None else budget
    budget[0] -= 1
    if budget[0] < 0 or depth > MAX_YAML_DEPTH:
        key = where.split(".", 1)[0].split("[", 1)[0]
        raise ConfigError(f"config key '{key}' is nested more than {MAX_YAML_DEPTH} levels deep, holds more than "
                          f"{MAX_YAML_NODES} values or holds itself; give it plain values")
    if type(value) in _PLAIN:
        return None
    items = value.items() if type(value) is dict else enumerate(value) if type(value) in (list, tuple) else None
    if items is None:
        return where, value
    for k, v in items:
        if type(value) is dict and type(k) not in _PLAIN:
            return f"{where} (key {shown(k)})", k
        found = not_plain(v, f"{where}.{k}" if type(value) is dict else f"{where}[{k}]", budget, depth + 1)
        if found:
            return found
    return None
