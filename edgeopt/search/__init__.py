"""Search over recipes on Optuna (an optional dependency: ``pip install edgeopt[search]``).

- ``space``: the search-space file (recipe paths and values, objectives, constraints, compound scaling).
- ``study``: the Optuna study in a shared database: queued trials, heartbeats, retries.
- ``objective``: one trial (the recipe with the trial's values, run and measured on the validation split; early
  pruning), and a reported trial measured once on the test split.
- ``result``: ``SearchConfig``, ``TrialRecord``, ``SearchResult`` and ``summarize``.
- ``runner``: ``run_search`` / ``report_search``: workers take queued trials until none is left; ``measure_reported``:
  the reported trials on the test split, once.
"""
from edgeopt.search.objective import metrics_on_test, trial_metrics
from edgeopt.search.result import SearchConfig, SearchResult, TrialRecord, summarize
from edgeopt.search.runner import keep_pareto_artifacts, measure_reported, report_search, run_search

__all__ = ["SearchConfig", "SearchResult", "TrialRecord", "keep_pareto_artifacts", "measure_reported", "metrics_on_test", "report_search", "run_search",
           "summarize", "trial_metrics"]
