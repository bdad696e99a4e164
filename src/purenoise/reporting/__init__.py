"""Reporting: what finished (or running) run folders say, as tables, intervals, a page and figures.

Reporting reads run folders; it never writes one (the engine does, and
:mod:`purenoise.run_paths` is where both find each file). One module per concept:

- :mod:`~purenoise.reporting.runs`: a run folder read into a :class:`~purenoise.reporting.runs.Run`.
- :mod:`~purenoise.reporting.summary`: one summary row per run, the table of runs, seed aggregates.
- :mod:`~purenoise.reporting.replicates`: runs that differ only in their seed, their mean and
  t-interval, paired differences.
- :mod:`~purenoise.reporting.text`: the text of a number (percent, mean ± std, interval, table).
- :mod:`~purenoise.reporting.report`: ``make_report``, the Markdown page and comparison files.
- :mod:`~purenoise.reporting.plots`: the figures, one module per kind.

The package imports none of them: importing :mod:`~purenoise.reporting.runs` stays free of
matplotlib and of the report's own dependencies (the report reuses a section of
:mod:`purenoise.compare_verdict`, which reads runs through this package).
"""
