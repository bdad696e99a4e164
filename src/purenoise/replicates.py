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

__all__ = ["Replicates", "group_replicates", "shared_key", "t_quantile", "LEVELS", "mean_interval", "paired_difference",
           "mean_std_per_position"]

# Two-sided 95% quantiles of Student's t for 1 ... 30 degrees of freedom (standard tables).
# Two-sided quantiles of Student's t (scipy.stats.t.ppf, 6 decimals) for df 1..30, by confidence
# level: 95% for one comparison, 99% for five at once (Bonferroni: 0.05 / 5 each).
_T_TABLE = {
    0.95: (12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
           2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
           2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
           2.048407, 2.045230, 2.042272),
    0.99: (63.656741, 9.924843, 5.840909, 4.604095, 4.032143, 3.707428, 3.499483, 3.355387, 3.249836,
           3.169273, 3.105807, 3.054540, 3.012276, 2.976843, 2.946713, 2.920782, 2.898231, 2.878440,
           2.860935, 2.845340, 2.831360, 2.818756, 2.807336, 2.796940, 2.787436, 2.778715, 2.770683,
           2.763262, 2.756386, 2.749996),
}
_Z = {0.95: 1.959964, 0.99: 2.575829}  # the normal quantiles the t quantiles tend to
LEVELS = tuple(_T_TABLE)
_SEED_SUFFIX = re.compile(r"[_\-.](?:s|seed)[_\-]?\d+$")


@dataclass
class Replicates:
    """Runs of one configuration, sorted by seed; ``label`` names the configuration."""

    label: str
    runs: list[Any]  # purenoise.runs.Run
    seeds: list[Any]

    @property
    def method(self) -> str:
        return self.runs[0].method


def _config_key(run: Any, exclude: Sequence[str]) -> str:
    """The run's config over the schema's keys (defaults filled in for keys an older run lacks)."""
    cfg = {k: run.config.get(k, f.default) for k, f in SCHEMA.items() if k not in exclude}
    return json.dumps(cfg, sort_keys=True, default=str)


def _result_key(run: Any) -> str:
    if not run.config:  # nothing says what the run was: it is its own configuration
        return f"path:{run.path}"
    return _config_key(run, ("seed", *keys_in_scope(FREE)))


def shared_key(run: Any) -> str:
    """What a run shares with a run it may be paired with: the shared-scope keys but the seed."""
    return _config_key(run, [k for k in SCHEMA if k not in keys_in_scope(SHARED) or k == "seed"])


def _label(runs: Sequence[Any]) -> str:
    stems = {_SEED_SUFFIX.sub("", r.name) for r in runs}
    if len(stems) == 1:
        return stems.pop()
    return f"{runs[0].name} (+{len(runs) - 1} seeds)"


def group_replicates(runs: Iterable[Any]) -> list[Replicates]:
    """Group runs whose configs differ only in their seed, in order of first appearance.

    Labels are the run names without their seed suffix (``..._s0`` -> ``...``) where the members
    agree on it; a label that two groups would share gets the first member's folder name. A run
    whose seed its configuration already has (a rerun in another folder) starts a group of its
    own, so that no seed counts twice in a mean or a paired difference.
    """
    groups: dict[tuple[str, int], list[Any]] = {}
    for r in runs:
        key, copy = _result_key(r), 0
        while any(m.config.get("seed") == r.config.get("seed") for m in groups.get((key, copy), ())):
            copy += 1
        groups.setdefault((key, copy), []).append(r)
    out = []
    for members in groups.values():
        members = sorted(members, key=lambda r: (r.config.get("seed") is None, r.config.get("seed", 0), r.name))
        out.append(Replicates(_label(members), members, [r.config.get("seed") for r in members]))
    labels = [g.label for g in out]
    for g in out:
        if labels.count(g.label) > 1:
            g.label = f"{g.label} [{g.runs[0].path.name}]"
    return out


def t_quantile(df: int, level: float = 0.95) -> float:
    """Two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom (``df >= 1``).

    ``level`` is 0.95 or 0.99 (:data:`LEVELS`). Table values up to 30; above, the Cornish-Fisher
    expansion around the normal quantile, within 2e-3 of the exact value there.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if level not in _T_TABLE:
        raise ValueError(f"confidence level must be one of {LEVELS}, got {level}")
    if df <= len(_T_TABLE[level]):
        return _T_TABLE[level][df - 1]
    z = _Z[level]
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


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


def paired_difference(a: Replicates, b: Replicates, value: Callable[[Any], float | None],
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
