"""Search over recipes on Optuna (an optional dependency: ``pip install edgeopt[search]``), and architecture search.

- ``space``: the search-space file (recipe paths and values, objectives, constraints, compound scaling).
- ``study``: the Optuna study in a shared database: queued trials, heartbeats, retries.
- ``objective``: one trial (the recipe with the trial's values, run and measured on the validation split; early
  pruning), and a reported trial measured once on the test split.
- ``result``: ``SearchConfig``, ``TrialRecord``, ``SearchResult`` and ``summarize``.
- ``runner``: ``run_search`` / ``report_search``: workers take queued trials until none is left; ``measure_reported``:
  the reported trials on the test split, once.

Architecture search (the ``nas`` recipe stage uses these; none of them imports the pipeline):

- ``nas_space``: the block search space as data, ``Architecture`` (one operation per block, JSON), ``build_network``.
- ``nas_cost``: ``OpCostTable`` (cost of each operation at each block) and the cost models that fill it (``macs``, ``params``).
- ``supernet``: every block's candidates mixed by softmax or Gumbel-softmax of its architecture parameters.
- ``darts``: first-order DARTS alternating search with an expected-cost term, resumable (``search``).
- ``oneshot``: sub-networks scored with the supernet's weights after batch-norm recalibration (``oneshot_score``).
- ``latency_table``: per-operator latency measured on LiteRT or a phone over adb (``measure_table``, resumable; the
  ``latency`` cost model reads its file); ``latency_predictor``: its prediction checked on random whole networks.
- ``evolution``: NSGA-II over architectures, one-shot score against predicted cost, with a cost limit (``evolve``).
- ``single_path``: a supernet trained one uniformly drawn path per step (``train_single_path``): one-shot scoring's
  supernet and a warm start for ``darts.search``.

Names load on first use (like ``edgeopt``'s): the recipe search imports the pipeline, and the pipeline's ``nas`` stage
imports the architecture-search modules of this package, so loading them all here would be an import cycle.
"""
from __future__ import annotations

import importlib

# public name -> the module that defines it
_EXPORTS = {
    "metrics_on_test": "objective", "trial_metrics": "objective",
    "SearchConfig": "result", "SearchResult": "result", "TrialRecord": "result", "summarize": "result",
    "keep_pareto_artifacts": "runner", "measure_reported": "runner", "report_search": "runner", "run_search": "runner",
    "Architecture": "nas_space", "NasSpace": "nas_space", "build_network": "nas_space",
    "OpCostTable": "nas_cost", "cost_model": "nas_cost",
    "Supernet": "supernet",
    "DartsConfig": "darts", "NasResult": "darts", "derive_within": "darts", "search": "darts",
    "SinglePathConfig": "single_path", "train_single_path": "single_path",
    "oneshot_score": "oneshot",
    "LatencyTable": "latency_table", "LatencyTableConfig": "latency_table", "measure_table": "latency_table",
    "PredictorCheck": "latency_predictor", "check_predictor": "latency_predictor",
    "EvolutionConfig": "evolution", "EvolutionResult": "evolution", "evolve": "evolution", "oneshot_scorer": "evolution",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeopt.search' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"edgeopt.search.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
