"""The evidence study in words: the verdicts PREREGISTRATION.md defines, the paragraph for users,
the README's sentence and ``findings.json``'s entries, from ``evidence_results``' numbers.

- **H1** (memorization drives OPeN's gain over DRS) by the pre-registered support rule: a data size
  supports it where its contrast (P1 or P2) is above 0 after Holm and its manipulation check
  passed; it refutes it where the contrast is below 0 or equivalent within +-1 point with the check
  passed; a failed check makes that data size uninformative. Both support: supported; one:
  partly supported; any refutes (and none supports): refuted there; otherwise not resolved.
- **H2** (OPeN against the best baseline) is P3's verdict.
- A verdict is **final** once its quantity has every planned seed and it cannot change with the
  rest of the family: always once all three are in, and before that where even Bonferroni's
  ``3 p`` (an upper bound of Holm's adjusted p) is below 0.05. Only final verdicts reach the README.

Everything the paragraph for users adds beyond P1-P3 (how each twin moved every method, the best
mean of all, the subsets) is labelled secondary or exploratory, as the pre-registration requires.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import evidence
import evidence_results as er
from evidence import BASELINE_SEEDS, LONG, LOSSES, MAIN, PRIMARY_SEEDS

from purenoise.reporting.text import standing

EXPECTED = {"P1": len(PRIMARY_SEEDS), "P2": len(PRIMARY_SEEDS), "P3": len(BASELINE_SEEDS)}
DECISIVE = ("above 0", "below 0", "OPeN ahead", "OPeN behind")


def final(prim: list[tuple], name: str) -> bool:
    """Whether the named primary verdict can no longer change (module docstring)."""
    rows = {row[0]: row for row in prim}
    if any(rows[k][2]["n"] < EXPECTED[k] for k in EXPECTED):
        _, _, s, _, v = rows[name]
        bound_decides = s["p"] is not None and min(1.0, er.FAMILY * s["p"]) < er.ALPHA
        return s["n"] >= EXPECTED[name] and bound_decides and v in DECISIVE
    return True


def _p_text(prim: list[tuple], p_adj: float) -> str:
    """Holm's adjusted p once the family is complete; before, its bound ("adjusted p <= 3 p")."""
    complete = all(row[2]["n"] >= EXPECTED[row[0]] for row in prim)
    return f"Holm p {p_adj:.4f}" if complete else f"adjusted p <= {p_adj:.4f}"


def _size_state(v: str, passed: bool) -> str:
    if not passed:
        return "is uninformative (its manipulation check failed)"
    if v == "above 0":
        return "supports H1"
    if v == "below 0":
        return "refutes H1 (below 0)"
    if v.startswith("equivalent"):
        return "refutes H1 (equivalent within +-1 point)"
    return "does not resolve H1"


def h1(runs: Path, prim: list[tuple]) -> tuple[str, str]:
    """``(verdict, sentence)`` for H1 by the pre-registered rule; verdict "incomplete" until final."""
    chosen, sizes = evidence.twins(runs), []
    for name, size, cell in (("P1", "n_max 1000", MAIN), ("P2", "n_max 6000", LONG)):
        _, _, s, p_adj, v = next(r for r in prim if r[0] == name)
        check = er.manipulation(runs, cell, chosen[cell], evidence.DIRECTION[cell]) if cell in chosen else None
        if check is None or check["passed"] is None or not final(prim, name):
            return "incomplete", "The memorization test is not finished: no verdict on it yet."
        state = _size_state(v, check["passed"])
        sizes.append((size, state, f"{er.fmt(s['mean'])} {er.ci(s)} points, {_p_text(prim, p_adj)}; "
                                   f"DRS minority-half training accuracy moved {er.fmt(check['moved'])} points"))
    supports = [size for size, st, _ in sizes if st.startswith("supports")]
    refutes = [size for size, st, _ in sizes if st.startswith("refutes")]
    if len(supports) == 2:
        word, after = "supported", ""
    elif supports:
        word, after = "partly supported", f" The advice holds at {supports[0]} only."
    elif len(refutes) == 2:
        word, after = "refuted", " The README's advice that OPeN pays off where the network memorizes is withdrawn."
    elif refutes:
        word, after = f"refuted at {refutes[0]}", ""
    else:
        word, after = "not resolved", (" The advice is a reading of the regime study that this design could not "
                                       "confirm.")
    per_size = "; ".join(f"at {size} the contrast {st} ({numbers})" for size, st, numbers in sizes)
    return word, (f"**Memorization (H1): {word}.** The contrast is OPeN − DRS in the cell whose DRS runs memorize "
                  f"their minority half more minus the same in the cell that memorizes less, paired by seed: "
                  f"{per_size}.{after}")


def _move(runs: Path, low: str, high: str, method: str) -> dict:
    """Per seed: a method's top-1 in the cell that memorizes more minus in the one that memorizes less."""
    pairs = ((er.top1(er.run_eval(runs, high, method, s)), er.top1(er.run_eval(runs, low, method, s)))
             for s in PRIMARY_SEEDS)
    return er.one_sample([h - lo for h, lo in pairs if h is not None and lo is not None])


def twin_moves(runs: Path, supported: bool = False) -> str:
    """Exploratory: how every method's top-1 moves from the cell meant to memorize less to the one
    meant to memorize more (paired by seed, 95% intervals, no correction), and the best mean per
    data size.

    With ``supported`` (H1 supported: both contrasts above 0 after Holm and both manipulation checks
    passed, so the design's "memorizes more" is measured) it says where every method does worse in
    the cell that memorizes more: only where each move's interval lies below 0, naming the moves that
    are not resolved otherwise. As the contrast is OPeN's move minus DRS's, it also says when, in both
    sizes, OPeN's gain grew because DRS lost more than OPeN: only where OPeN's own move lies below 0
    (OPeN lost too, so the gain is not OPeN gaining).
    """
    chosen, parts, unresolved, worse, drs_lost = evidence.twins(runs), [], [], [], []
    for size, cell in (("n_max 1000", MAIN), ("n_max 6000", LONG)):
        if cell not in chosen:
            continue
        high, low = (cell, chosen[cell]) if evidence.DIRECTION[cell] == "lower" else (chosen[cell], cell)
        moves = {m: _move(runs, low, high, m) for m in ("erm", "drs", "open")}
        if any(d["n"] < len(PRIMARY_SEEDS) for d in moves.values()):
            continue
        means = {(c, m): statistics.fmean(er.seeds_of(runs, c, m)) for c in (low, high) for m in moves}
        (best_cell, best_m), best = max(means.items(), key=lambda kv: kv[1])
        parts.append(f"at {size}, from `{low}` to `{high}` (the cell meant to memorize more): "
                     + ", ".join(f"{er.LABELS[m]} {er.fmt(d['mean'])} {er.ci(d)}" for m, d in moves.items())
                     + f" points, and the highest of the six means is {er.LABELS[best_m]}'s in `{best_cell}` "
                       f"({best:.2f})")
        worse.append(all(d["mean"] < 0 for d in moves.values()))
        unresolved += [f"{er.LABELS[m]}'s move at {size}" for m, d in moves.items() if d["mean"] < 0 <= d["hi"]]
        drs_lost.append(moves["drs"]["mean"] < moves["open"]["mean"] and moves["open"]["hi"] < 0)
    if not parts:
        return ""
    tail = ""
    if supported and worse == [True, True]:
        tail = (" In both data sizes every method does worse in the cell that memorizes more: OPeN's larger gain "
                "comes where all three are less accurate." if not unresolved else
                " In both data sizes every method's mean is lower in the cell that memorizes more, but not every "
                "move is resolved: " + (f"the interval of {unresolved[0]} contains 0." if len(unresolved) == 1
                                        else f"the intervals of {_and(unresolved)} contain 0."))
    if supported and drs_lost == [True, True]:
        tail += (" The contrast is OPeN's move minus DRS's: in both data sizes OPeN's gain over DRS is larger in "
                 "the cell that memorizes more because DRS loses more there than OPeN does, not because OPeN "
                 "gains (OPeN's own move is below 0).")
    return ("**What the twins also did** (exploratory, seeds 0-4, paired by seed, 95% intervals without "
            "correction): the one config change moved the methods' top-1, not only the gain: "
            + "; ".join(parts) + "." + tail)


def _tops(runs: Path) -> dict[str, list[float]]:
    """Main-cell test top-1 over seeds 0-9 of every method trained there with all ten seeds."""
    tops = {m: er.seeds_of(runs, MAIN, m, seeds=BASELINE_SEEDS)
            for m in (*er.BASELINES, "open", *(f"open_{loss}" for loss in LOSSES))}
    return {m: v for m, v in tops.items() if len(v) == len(BASELINE_SEEDS)}


def _on_better_loss(runs: Path, tops: dict[str, list[float]]) -> tuple[str, dict] | None:
    """``(the loss with the higher mean, OPeN on it - it over seeds 0-9)``, None until all are in;
    ``tops`` is :func:`_tops`."""
    if any(f"erm_{loss}" not in tops for loss in LOSSES):
        return None
    loss = max((f"erm_{x}" for x in LOSSES), key=lambda m: statistics.fmean(tops[m]))
    d = er.paired_gain(runs, MAIN, BASELINE_SEEDS, a="open" + loss[3:], b=loss)
    return (loss, d) if d["n"] == len(BASELINE_SEEDS) else None


def in_short(runs: Path, prim: list[tuple]) -> str:
    """The bottom line for a user, from final verdicts only ("" until H1 and H2 are both final): which
    method to pick on data like the main cell's, where OPeN stands against every other baseline
    (secondary), what adding it to the better loss does, and H1's verdict."""
    (w1, _), (w2, _) = h1(runs, prim), h2(runs, prim)
    if "incomplete" in (w1, w2):
        return ""
    best, _ = er.best_baseline(runs)
    label = er.LABELS[best]
    lead = {"OPeN ahead": f"OPeN is the better pick: it is ahead of the best other method, {label}",
            "OPeN behind": f"{label} is the better pick: OPeN is behind it"}.get(
        w2, f"OPeN is equivalent to {label} within +-1 point" if w2.startswith("equivalent")
        else f"OPeN is not resolved against {label}, the best other method")
    groups: dict[str, list[str]] = {}
    for m in er.BASELINES:
        if m != best:
            d = er.paired_gain(runs, MAIN, BASELINE_SEEDS, b=m)
            word = standing(d, "ahead of", "behind", "not measured against", "not resolved against")
            groups.setdefault(word, []).append(er.LABELS[m])
    others = ", and ".join(f"{word} {_and(names)}" for word, names in groups.items())
    text = f"**In short**, on data like the main cell's (seeds 0-9): {lead} (H2). OPeN is {others} (secondary)."
    on_loss = _on_better_loss(runs, _tops(runs))
    if on_loss is not None:
        loss, d = on_loss
        effect = {"ahead": "raises", "behind": "lowers"}.get(standing(d), "does not resolvably change")
        text += f" Adding OPeN to {er.LABELS[loss]} {effect} its top-1 ({er.fmt(d['mean'])} points, secondary)."
    return text + f" That memorization drives OPeN's gain over DRS: {w1} (H1)."


def h2(runs: Path, prim: list[tuple]) -> tuple[str, str]:
    """``(verdict, sentence)`` for H2 (P3) and the secondary comparisons a user weighs with it."""
    name, what, s, p_adj, v = next(r for r in prim if r[0] == "P3")
    if not final(prim, "P3"):
        return "incomplete", "The comparison with the best baseline is not finished."
    best, _ = er.best_baseline(runs)
    text = (f"**Against the best baseline (H2): {v}.** The best baseline in the main cell is "
            f"{er.LABELS[best]}; OPeN − {er.LABELS[best]} is {er.fmt(s['mean'])} points {er.ci(s)} over "
            f"{s['n']} seeds (Holm p {p_adj:.4f}).")
    tops = _tops(runs)
    on_loss = _on_better_loss(runs, tops)
    if on_loss is not None:
        loss, d = on_loss
        text += (f" OPeN added to the better loss, {er.LABELS[loss]}: {er.fmt(d['mean'])} "
                 f"{er.ci(d)} over it (secondary, {standing(d, missing='incomplete')}).")
    if tops:
        top = max(tops, key=lambda m: statistics.fmean(tops[m]))
        text += (f" The highest mean top-1 of the methods trained there with all ten seeds is {er.LABELS[top]}'s, "
                 f"{statistics.fmean(tops[top]):.2f} (exploratory).")
    return v, text


def subsets(runs: Path) -> str:
    """Secondary: OPeN - DRS and OPeN - RS over the five long-tailed subsets of each cell, once all are in."""
    parts = []
    for size, cell in (("n_max 1000", MAIN), ("n_max 6000", LONG)):
        diffs = []
        for other in ("drs", "rs"):
            by_subset, by_seed = er.over_subsets(runs, cell, other)
            if None in by_subset or by_seed["std"] is None:
                return "The subsets are not finished."
            d = er.one_sample(by_subset)
            word = standing(d, missing="incomplete")
            diffs.append(f"OPeN − {er.LABELS[other]} {er.fmt(d['mean'])} {er.ci(d)} ({word}; std "
                         f"{d['std']:.2f} over {d['n']} subsets against {by_seed['std']:.2f} "
                         f"over {by_seed['n']} seeds)")
        parts.append(f"at {size}, " + ", ".join(diffs))
    return ("**The subset** (secondary, seed 0 on five long-tailed subsets): " + "; ".join(parts) + ".")


def against_rs(runs: Path) -> str:
    """For the README's RS line: OPeN - RS in the main cell over seeds 0-9, the baselines table's
    secondary quantity ("" until all ten pairs are in)."""
    d = er.paired_gain(runs, MAIN, BASELINE_SEEDS, b="rs")
    if d["n"] < len(BASELINE_SEEDS):
        return ""
    return (f" Over the evidence study's seeds 0-9 there, OPeN − RS is {er.fmt(d['mean'])} {er.ci(d)} "
            f"({standing(d)}; secondary).")


def for_users(runs: Path, prim: list[tuple]) -> list[str]:
    """The paragraph for users: each verdict whichever way it falls, then what qualifies it."""
    w1, s1 = h1(runs, prim)
    moves = "" if w1 == "incomplete" else twin_moves(runs, supported=w1 == "supported")
    body = [in_short(runs, prim), s1, moves, h2(runs, prim)[1], subsets(runs)]
    return ["### For users", "", " ".join(x for x in body if x), ""]


def status(runs: Path) -> str:
    """The README's sentence: each hypothesis's verdict once final, else "in progress", and the
    parts still training.

    The count of finished runs is left to RESULTS.md (it changes with every run, the README only
    with a verdict or a part).
    """
    _, prim = er.primary_table(runs)
    w1, s1 = h1(runs, prim)
    w2, s2 = h2(runs, prim)
    if w1 == "incomplete" and w2 == "incomplete":
        return "It is in progress; RESULTS.md shows the runs finished so far."
    unfinished = [f"the {name} part" for name, k, n in evidence.parts_done(runs) if not 0 < n == k]
    parts = [in_short(runs, prim), s1 if w1 != "incomplete" else "The memorization test is in progress.",
             twin_moves(runs, supported=w1 == "supported") if w1 != "incomplete" else "",
             s2 if w2 != "incomplete" else "The comparison with the best baseline is in progress.",
             f"Still training: {_and(unfinished)} (RESULTS.md shows the runs finished so far)." if unfinished else ""]
    return " ".join(p for p in parts if p)


def _and(items: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def twin_findings(runs: Path) -> list[dict]:
    """The twins as cells of ``findings.json``: their DRS runs' fit of the minority half and OPeN - DRS."""
    cells = []
    for cell in evidence.twins(runs).values():
        drs = [er.run_eval(runs, cell, "drs", s) for s in PRIMARY_SEEDS]
        d = er.paired_gain(runs, cell, PRIMARY_SEEDS)
        if None in drs or d["n"] < len(PRIMARY_SEEDS):
            continue
        train = [er.train_minority(e) for e in drs]
        gap = [a - er.test_minority(e) for a, e in zip(train, drs)]
        cells.append({"cell": cell, "drs_train_minority_half": round(statistics.fmean(train), 2),
                      "drs_gap_minority_half": round(statistics.fmean(gap), 2),
                      "open_minus_drs": {k: round(d[k], 2) for k in ("mean", "lo", "hi")},
                      "seeds": d["n"], "verdict": standing(d, missing="incomplete")})
    return cells


def findings(runs: Path) -> dict:
    """The final verdicts of H1 and H2 for ``findings.json`` ("in progress" until final)."""
    _, prim = er.primary_table(runs)
    (w1, _), (w2, _) = h1(runs, prim), h2(runs, prim)
    best, _ = er.best_baseline(runs)
    return {"memorization": "in progress" if w1 == "incomplete" else w1,
            "against_best_baseline": "in progress" if w2 == "incomplete" else w2,
            "best_baseline": er.LABELS[best] if best and w2 != "incomplete" else None}
