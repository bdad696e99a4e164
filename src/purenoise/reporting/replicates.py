"""Runs that repeat one configuration with different seeds: groups, mean ± std, paired differences.

Two runs are replicates when their resolved configs agree on every key that can change a result:
all keys except ``seed`` and those that change no number (the config's ``free`` scope: name, device,
workers, progress, ...). Methods compared on the same seeds are compared **paired**: the difference of a
metric is taken seed by seed (OPeN seed 0 minus DRS seed 0, ...), which removes what the seeds
share (the initialization, the sampling order of the first phase, the whole first phase of
branched runs), and summarized with a 95% t-interval over the seeds. The long-tailed subset is
fixed by ``subset_seed``, not by ``seed``: all seeds of a study train on the same subset, so the
interval covers the training's randomness on that subset, not the choice of subset.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from purenoise.config import FREE, SCHEMA, SHARED, keys_in_scope
from purenoise.reporting.runs import Run

__all__ = ["Replicates", "group_replicates", "shared_key", "t_quantile", "LEVELS", "mean_interval", "paired_difference",
           "mean_std_per_position"]

# The confidence levels reports use: 95% for one comparison, 99% for a family of five (Bonferroni).
LEVELS = (0.95, 0.99)
_SEED_SUFFIX = re.compile(r"[_\-.](?:s|seed)[_\-]?\d+$")


@dataclass
class Replicates:
    """Runs of one configuration, sorted by seed; ``label`` names the configuration."""

    label: str
    runs: list[Run]
    seeds: list[Any]

    @property
    def method(self) -> str:
        return self.runs[0].method


def _config_key(run: Run, exclude: Sequence[str]) -> str:
    """The run's config over the schema's keys (defaults filled in for keys an older run lacks)."""
    cfg = {k: run.setting(k) for k in SCHEMA if k not in exclude}
    return json.dumps(cfg, sort_keys=True, default=str)


def _result_key(run: Run) -> str:
    if not run.config:  # nothing says what the run was: it is its own configuration
        return f"path:{run.path}"
    return _config_key(run, ("seed", *keys_in_scope(FREE)))


def shared_key(run: Run) -> str:
    """What a run shares with a run it may be paired with: the shared-scope keys but the seed."""
    return _config_key(run, [k for k in SCHEMA if k not in keys_in_scope(SHARED) or k == "seed"])


def _label(runs: Sequence[Run]) -> str:
    stems = {_SEED_SUFFIX.sub("", r.name) for r in runs}
    if len(stems) == 1:
        return stems.pop()
    return f"{runs[0].name} (+{len(runs) - 1} seeds)"


def group_replicates(runs: Iterable[Run]) -> list[Replicates]:
    """Group runs whose configs differ only in their seed, in order of first appearance.

    Labels are the run names without their seed suffix (``..._s0`` -> ``...``) where the members
    agree on it; a label that two groups would share gets the first member's folder name. A run
    whose seed its configuration already has (a rerun in another folder) starts a group of its
    own, so that no seed counts twice in a mean or a paired difference.
    """
    groups: dict[tuple[str, int], list[Run]] = {}
    for r in runs:
        key, copy = _result_key(r), 0
        while any(m.seed == r.seed for m in groups.get((key, copy), ())):
            copy += 1
        groups.setdefault((key, copy), []).append(r)
    out = []
    for members in groups.values():
        members = sorted(members, key=lambda r: (r.seed is None, 0 if r.seed is None else r.seed, r.name))
        out.append(Replicates(_label(members), members, [r.seed for r in members]))
    labels = [g.label for g in out]
    for g in out:
        if labels.count(g.label) > 1:
            g.label = f"{g.label} [{g.runs[0].path.name}]"
    return out


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom (``df >= 1``).

    ``scipy.stats.t.ppf(0.5 + level / 2, df)``, for any level in (0, 1): 0.95 for one comparison,
    ``1 - 0.05 / k`` for a Bonferroni family of ``k``.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be between 0 and 1 (exclusive), got {level}")
    from scipy import stats

    return float(stats.t.ppf(0.5 + level / 2, df))


def mean_interval(values: Sequence[float], level: float = 0.95) -> dict[str, Any]:
    """Mean, sample std (ddof 1) and the t-interval of the mean at ``level`` (default 95%).

    Missing and non-finite values are skipped; std and interval need two values or more.
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(vals)
    if n == 0:
        return {"n": 0, "mean": None, "std": None, "lo": None, "hi": None}
    mean = statistics.fmean(vals)
    if n < 2:
        return {"n": 1, "mean": mean, "std": None, "lo": None, "hi": None}
    std = statistics.stdev(vals)
    half = t_quantile(n - 1, level) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "lo": mean - half, "hi": mean + half}


def paired_difference(a: Replicates, b: Replicates, value: Callable[[Run], float | None],
                      level: float = 0.95) -> dict[str, Any]:
    """``value(a's run) - value(b's run)`` over the seeds both groups have, with its interval at ``level``.

    Returns :func:`mean_interval`'s keys plus ``seeds`` (those paired) and ``wins`` (how many
    differences are positive).
    """
    b_by_seed = {s: r for s, r in zip(b.seeds, b.runs) if s is not None}
    seeds, diffs = [], []
    for s, r in zip(a.seeds, a.runs):
        if s in b_by_seed:
            va, vb = value(r), value(b_by_seed[s])
            if va is not None and vb is not None and math.isfinite(va) and math.isfinite(vb):
                seeds.append(s)
                diffs.append(va - vb)
    return {**mean_interval(diffs, level), "seeds": seeds, "wins": sum(d > 0 for d in diffs)}


def mean_std_per_position(rows: Sequence[Sequence[float | None]]) -> tuple[list[float | None], list[float | None]]:
    """Element-wise mean and sample std of equal-length lists (``None`` entries skipped)."""
    if not rows:
        return [], []
    means, stds = [], []
    for col in zip(*rows):
        vals = [v for v in col if v is not None]
        means.append(statistics.fmean(vals) if vals else None)
        stds.append(statistics.stdev(vals) if len(vals) > 1 else None)
    return means, stds
