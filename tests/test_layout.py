"""The repository's layout rules, read from the source: tests share code only through helpers,
and no module of the package outgrows one idea.

- A test file imports nothing from the ``tests`` tree except :mod:`tests.helpers` (and its
  submodules) and a ``conftest``: code two test modules share lives in the helpers, so no test
  module depends on another one's internals, and moving or splitting a test file breaks nothing.
- Every module of ``src/purenoise`` has at most :data:`MAX_LINES` lines.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
PACKAGE = REPO / "src" / "purenoise"
MAX_LINES = 450


def _module_of(path: Path, root: Path = REPO) -> str:
    """The dotted module name of ``path`` (``tests/data/conftest.py`` -> ``tests.data.conftest``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str, root: Path) -> bool:
    """Whether the dotted ``name`` is a file or a package under ``root``."""
    path = root.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imported_modules(source: str, module: str, is_package: bool, root: Path = REPO) -> list[str]:
    """Every module an ``import`` in ``source`` names, relative imports resolved against ``module``.

    ``from pkg import name`` counts as an import of ``pkg.name`` where that is a module under
    ``root`` (a submodule imported by name), else of ``pkg``.
    """
    here = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = here[:len(here) - (node.level - 1)] if node.level > 1 else here
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(sub if _is_module(sub, root) else base)
    return found


def _allowed(target: str) -> bool:
    """Whether a test file may import ``target``: anything outside ``tests``, the helpers, a conftest."""
    parts = target.split(".")
    if parts[0] != "tests":
        return True
    return parts[:2] == ["tests", "helpers"] or parts[-1] == "conftest"


def _test_import_violations(path: Path, source: str | None = None, root: Path = REPO) -> list[str]:
    module = _module_of(path, root)
    source = path.read_text(encoding="utf-8") if source is None else source
    targets = _imported_modules(source, module, path.name == "__init__.py", root)
    return [f"{path.relative_to(root)} imports {t}" for t in dict.fromkeys(targets) if not _allowed(t)]


def test_checker_sees_imports_between_test_modules(tmp_path):
    # The rule below must be able to fail: a sibling test module, relative or absolute, is caught;
    # helpers, conftests and the package are not.
    pkg = tmp_path / "tests" / "data"
    (tmp_path / "tests" / "helpers").mkdir(parents=True)
    pkg.mkdir()
    for f in ("tests/__init__.py", "tests/helpers/__init__.py", "tests/helpers/writers.py",
              "tests/data/__init__.py", "tests/data/conftest.py", "tests/data/test_a.py", "tests/data/_support.py"):
        (tmp_path / f).write_text("")
    source = ("from .test_a import x\nfrom tests.data import test_a\nimport tests.data.test_a\n"
              "from . import _support\nfrom .conftest import fixture\nfrom tests.helpers.writers import w\n"
              "from tests.helpers import deadline\nfrom purenoise import OPeN\nimport torch\n")
    found = _test_import_violations(pkg / "test_b.py", source, root=tmp_path)
    assert found == [f"tests/data/test_b.py imports {t}" for t in ("tests.data.test_a", "tests.data._support")]


def test_tests_import_only_helpers_and_conftests():
    violations = [v for path in sorted(TESTS.rglob("*.py")) for v in _test_import_violations(path)]
    assert not violations, (
        "test files may import from the tests tree only tests.helpers (and its submodules) and conftest "
        "modules; move what they share into tests/helpers/:\n" + "\n".join(violations))


def test_package_modules_stay_small():
    long = [f"{p.relative_to(REPO)}: {n} lines" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, f"modules of src/purenoise over {MAX_LINES} lines; split them by idea:\n" + "\n".join(long)


@pytest.mark.parametrize("name, expected", [("tests.helpers.writers", True), ("tests.helpers", True),
                                            ("tests.engine.conftest", True), ("purenoise.darbn", True),
                                            ("tests.test_report", False), ("tests.engine._torchrun", False)])
def test_allowed_targets(name, expected):
    assert _allowed(name) is expected
