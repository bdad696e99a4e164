"""``purenoise compare``: from a user's data to a verdict in words.

One command trains ERM, RS, DRS and OPeN (or the methods asked for) over several seeds on a
config or an image folder, then says per pair of methods whether one is ahead, behind or not
resolved, and whether the runs are in the state where the Fashion-MNIST-LT study found OPeN to
help. The pieces: :mod:`~purenoise.compare_setup` (defaults that fit the data),
:mod:`~purenoise.compare_plan` (the runs, one process each, resumable) and
:mod:`~purenoise.compare_verdict` (the words). Everything goes to one folder, ``--out``:

    OUT/compare_config.yaml   the config every run starts from (the filled defaults included)
    OUT/compare_log.jsonl     each run's command, exit code and seconds
    OUT/<method>_s<seed>/     the run folders
    OUT/verdict.md            what is printed at the end
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from purenoise.compare_plan import (
    CONFIG_FILE,
    LOG_FILE,
    VERDICT_FILE,
    Method,
    RunSpec,
    make_plan,
    parse_methods,
    train_plan,
)
from purenoise.compare_setup import base_config, user_config
from purenoise.compare_verdict import PAIRS, pair_verdicts, should_open_help
from purenoise.config import FREE, SCHEMA, apply_overrides, dump_config, saved_value, validate_config
from purenoise.errors import ConfigError, OutputError
from purenoise.fileio import atomic_write_text
from purenoise.reporting.replicates import Replicates
from purenoise.reporting.runs import load_run
from purenoise.reporting.text import mean_std_of
from purenoise.run_paths import RunPaths
from purenoise.settings import Settings

__all__ = ["compare", "check_out", "verdict_markdown"]

_OWN_FILES = (CONFIG_FILE, LOG_FILE, VERDICT_FILE)
_OWN_TEMP = re.compile(r"\.(?:%s)\.\w+\.tmp" % "|".join(re.escape(n) for n in _OWN_FILES))
_RUN_FOLDER = re.compile(r"(?:erm|rs|drs|open)(?:_[A-Za-z0-9_.-]+)?_s\d+")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys that change a result (not the free ones) whose values differ between two saved
    configs, as ``key: old there, new now``."""
    return [f"{k}: {saved_value(old, k)!r} there, {saved_value(new, k)!r} now" for k in SCHEMA
            if SCHEMA[k].scope != FREE and k not in ("method", "seed") and saved_value(old, k) != saved_value(new, k)]


def check_out(out: Path, base: Settings) -> None:
    """Refuse an ``--out`` that holds anything but this comparison's own files, or a comparison
    with other settings (its runs would not be comparable with new ones)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; a comparison needs a folder: choose another --out")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if not entries:
        return
    if not (out / CONFIG_FILE).is_file():
        shown = ", ".join(p.name for p in entries[:5]) + (f" (and {len(entries) - 5} more)" if len(entries) > 5 else "")
        raise OutputError(f"--out {out} already holds files and no {CONFIG_FILE} ({shown}): it is not a comparison's "
                          "folder, and a comparison writes only into its own. Choose a new or empty --out folder")
    foreign = [p.name for p in entries if not (
        (p.name in _OWN_FILES or _OWN_TEMP.fullmatch(p.name)) and p.is_file() and not p.is_symlink()
        or _RUN_FOLDER.fullmatch(p.name) and p.is_dir() and not p.is_symlink())]
    if foreign:
        raise OutputError(f"--out {out} holds entries a comparison does not write: {', '.join(foreign[:10])}; move "
                          "them out (symbolic links are refused too), or choose another --out")
    try:
        old = yaml.safe_load((out / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise OutputError(f"{out / CONFIG_FILE} cannot be read ({e}); choose another --out") from None
    new = yaml.safe_load(dump_config(base))
    diff = _differences(old if isinstance(old, dict) else {}, new)
    if diff:
        raise ConfigError(
            f"--out {out} holds a comparison with other settings ({'; '.join(diff[:6])}). Its runs would not be "
            "comparable with new ones: give the same settings to continue it, or choose another --out")


def _check_runs(base: Settings, plan: Sequence[RunSpec]) -> None:
    """Each run's config must be valid (a variant's value, a switch epoch in range) before any run starts."""
    for method in {s.method for s in plan}:
        validate_config(apply_overrides(base.as_dict(), method.overrides()), f"--methods ({method.label})")


def _groups(plan: Sequence[RunSpec], out: Path) -> tuple[dict[str, Replicates], dict[str, str], list[Method]]:
    """The finished runs by method (key: the folder stem), their labels, and the methods in plan order."""
    methods: list[Method] = []
    runs: dict[str, list] = {}
    for spec in plan:
        if spec.method not in methods:
            methods.append(spec.method)
        if RunPaths(out / spec.name).eval.exists():
            runs.setdefault(spec.method.name, []).append(load_run(out / spec.name))
    groups = {k: Replicates(k, v, [saved_value(r.config, "seed") for r in v]) for k, v in runs.items()}
    return groups, {m.name: m.label for m in methods}, methods


def verdict_markdown(plan: Sequence[RunSpec], out: Path, title: str) -> list[str]:
    """The lines of ``verdict.md``: test top-1 per method, the verdicts, "Should OPeN help here?"."""
    groups, labels, methods = _groups(plan, out)
    lines = [f"# purenoise compare: {title}", "", "Test top-1 % (mean ± std over seeds):", ""]
    for m in methods:
        g = groups.get(m.name)
        if g is None:
            lines.append(f"- {m.label}: no finished run yet")
            continue
        lines.append(f"- {m.label}: {mean_std_of([(r.eval or {}).get('top1') for r in g.runs])} "
                     f"(seed{'s' if len(g.seeds) > 1 else ''} {', '.join(map(str, g.seeds))})")
    # A variant is compared with the plain method it varies, and like it with the others.
    variants = [(m.name, b) for m in methods if m.key is not None
                for b in [m.base] + [b for a, b in PAIRS if a == m.base]]
    lines += ["", "Paired by seed over the seeds both have, test top-1 points with 95% intervals:", ""]
    lines += [f"- {v}" for v in pair_verdicts(groups, labels, variants)] or ["- no pair of methods to compare"]
    # The diagnostic reads plain ERM and DRS runs; every OPeN run shows its noise predictions.
    shown = [r for m in methods if m.name in groups and (m.key is None or m.base == "open") for r in groups[m.name].runs]
    return lines + [""] + should_open_help(shown)


def _say_settings(base: Settings, notes: Sequence[str], plan: Sequence[RunSpec], seeds: int, out: Path) -> None:
    where = f"{base.data_root} ({base.dataset})" if base.data_root else base.dataset
    names = list(dict.fromkeys(s.method.label for s in plan))
    print(f"compare: {', '.join(names)} on {where}, {seeds} seed{'s' if seeds > 1 else ''}, {base.epochs} epochs: "
          f"{len(plan)} runs into {out}", flush=True)
    for line in notes:
        print(f"compare: {line}", flush=True)
    if any(s.method.base in ("drs", "open") for s in plan) and not base.defer_epoch:
        print("compare: DRS and OPeN switch at epoch 0, so they are trained from scratch, not from ERM", flush=True)


def compare(*, config: str | None = None, data: str | None = None, methods: str = "erm,rs,drs,open", seeds: int = 3,
            epochs: int | None = None, out: str = "runs/compare", sets: Sequence[str] = (),
            runner: Callable[[Sequence[str]], int] | None = None) -> int:
    """Train the comparison's unfinished runs, print and write the verdict; returns an exit code.

    0 when every run finished; the first failed run's exit code otherwise (1 when a run only
    waits for its parent); 130/143 when the user stopped it. ``runner`` trains one run from its
    ``purenoise`` arguments (default: a process of its own).
    """
    if (config is None) == (data is None):
        raise ConfigError("compare needs --config FILE (a purenoise config) or --data DIR (an image folder), not both")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    wanted = parse_methods(methods)
    base, notes = base_config(user_config(config, data, sets, epochs))
    plan = make_plan(wanted, seeds, base.defer_epoch)
    _check_runs(base, plan)
    out_dir = Path(out)
    check_out(out_dir, base)
    _say_settings(base, notes, plan, seeds, out_dir)
    config_path = out_dir / CONFIG_FILE
    atomic_write_text(config_path, dump_config(base))
    failed, stopped = train_plan(plan, out_dir, config_path, runner)
    lines = verdict_markdown(plan, out_dir, str(data or config))
    if failed:
        lines += ["", f"Not finished: {', '.join(n for n, _ in failed)}; run the same command again to "
                      "continue (finished runs are skipped)."]
    text = "\n".join(lines) + "\n"
    atomic_write_text(out_dir / VERDICT_FILE, text)
    print("\n" + text + f"\n(written to {out_dir / VERDICT_FILE})", flush=True)
    if stopped:  # a run killed by signal N reports -N; the shell's convention is 128 + N
        code = failed[-1][1] or 130
        return code if code > 0 else 128 - code
    codes = [c for _, c in failed if c]
    return codes[0] if codes else (1 if failed else 0)
