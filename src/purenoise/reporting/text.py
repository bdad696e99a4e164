"""How purenoise writes a result number: percent, mean ± std, a paired interval, a verdict, a table.

One home for the text of a number, so that the CLI's tables, ``purenoise report`` and the
study's RESULTS.md print the same value the same way. Inputs are fractions (0.8247); outputs
are points with two decimals (``82.47``). Differences carry their sign (``+1.63``).

The interval dictionaries are those of :func:`purenoise.reporting.replicates.mean_interval` and
:func:`purenoise.reporting.replicates.paired_difference`: ``n``, ``mean``, ``std``, ``lo``, ``hi``.
Torch-free.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["pct", "mean_std", "mean_std_of", "interval", "verdict_word", "standing", "verdict", "markdown_table"]


def pct(v: float | None) -> str:
    """A fraction in points with two decimals; ``-`` for a missing value."""
    return "-" if v is None else f"{100 * v:.2f}"


def mean_std(mean: float | None, std: float | None) -> str:
    """``mean ± std`` in points; the mean alone when there is no std (one run)."""
    return pct(mean) + ("" if mean is None or std is None else f" ± {100 * std:.2f}")


def mean_std_of(values: Sequence[float]) -> str:
    """:func:`mean_std` of a list of fractions (sample std, ddof 1); missing and non-finite values are
    skipped, ``-`` when none is left."""
    values = [v for v in values if v is not None and math.isfinite(v)]  # as mean_interval does
    if not values:
        return "-"
    return mean_std(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None)


def interval(d: Mapping[str, Any] | None) -> str:
    """A paired difference: ``+1.63 ± 0.45 [+0.51, +2.75]`` (mean ± std [95% interval]) in points.

    One pair gives ``+1.63 (1 seed)``: no spread and no interval can be computed from it.
    """
    if d is None or d["mean"] is None:
        return "-"
    if d["lo"] is None:
        return f"{100 * d['mean']:+.2f} (1 seed)"
    return f"{100 * d['mean']:+.2f} ± {100 * d['std']:.2f} [{100 * d['lo']:+.2f}, {100 * d['hi']:+.2f}]"


def verdict_word(d: Mapping[str, Any] | None) -> str | None:
    """``holds``, ``reversed`` or ``not resolved`` for ``a > b`` from the 95% interval of ``a - b``.

    ``holds`` when the interval lies above 0, ``reversed`` when it lies below 0; ``None`` with
    fewer than two paired seeds (no interval).
    """
    if d is None or d["n"] < 2:
        return None
    return "holds" if d["lo"] > 0 else "reversed" if d["hi"] < 0 else "not resolved"


def standing(d: Mapping[str, Any] | None, ahead: str = "ahead", behind: str = "behind",
             missing: str = "not measured", unresolved: str = "not resolved") -> str:
    """Where ``a`` stands against ``b`` in words, from the 95% interval of ``a - b``.

    ``ahead`` when the interval lies above 0, ``behind`` when it lies below 0, ``unresolved``
    when it contains 0, ``missing`` with fewer than two paired seeds (no interval): the same rule
    as :func:`verdict_word`, in the words a sentence about a method needs.
    """
    word = verdict_word(d)
    return missing if word is None else {"holds": ahead, "reversed": behind}.get(word, unresolved)


def verdict(d: Mapping[str, Any] | None) -> str:
    """:func:`verdict_word` with where the interval lies and the number of seeds, for a claims table."""
    word = verdict_word(d)
    if word is None:
        return "too few paired seeds yet"
    where = {"holds": "interval above 0", "reversed": "interval below 0", "not resolved": "interval contains 0"}
    return f"{f'**{word}**' if word != 'not resolved' else word}: {where[word]} ({d['n']} seeds)"


def markdown_table(head: Sequence[Any], rows: Sequence[Sequence[Any]], right_from: int = 1) -> list[str]:
    """The lines of a Markdown table; columns from ``right_from`` on are right-aligned (numbers).

    A ``|`` inside a cell is escaped, so a run or class name cannot break the table.
    """
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    align = ["---" if i < right_from else "---:" for i in range(len(head))]
    return ["| " + " | ".join(map(esc, head)) + " |", "|" + "|".join(align) + "|"] + [
        "| " + " | ".join(map(esc, r)) + " |" for r in rows]
