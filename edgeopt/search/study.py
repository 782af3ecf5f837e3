"""The Optuna side of a search: the study in its database, the queued budget, taking a trial, heartbeats.

The budget of N trials is queued when the study is created; a worker takes a queued trial by moving it
from WAITING to RUNNING in the database (an update only one worker can win). Grid and random trials are
queued with their values; Bayesian (TPE) and NSGA-II trials are queued empty and sampled when taken.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import threading
import time
import warnings
from pathlib import Path

from edgeopt.config import RecipeError
from edgeopt.search.space import SearchSpace

META_KEY = "edgeopt"  # study user attribute: what the study was created for, and its budget
TEST_KEY = "edgeopt_test"  # study user attribute: trial number -> its test metrics, read once after the search for reported trials
SELECTION = "val"  # the split trials are scored on; studies made before this was recorded scored them on the test split


def retry_history(frozen) -> list[int]:
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" in Optuna 5
        return RetryHeartbeatStaleTrialCallback.retry_history(frozen)


class Heartbeat:
    """Records the trial's heartbeat in the database every ``interval`` seconds while the trial runs."""

    def __init__(self, storage, trial_id: int, interval: int):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self):
        while True:
            self.storage.record_heartbeat(self.trial_id)
            if self._stop.wait(self.interval):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _storage(url: str, config):
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeats are "experimental" in Optuna 5
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=config.heartbeat_seconds, grace_period=config.grace_seconds,
                                                  heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=config.max_retry))
        except Exception:  # workers starting together race to create the schema of a new database: one wins, the others retry
            if attempt == 5:
                raise
            time.sleep(0.5 + random.random())


def _sampler(config, space: SearchSpace, seed: int):
    import optuna

    def violations(frozen):  # set by the trial; a trial stopped before measuring counts as breaking them
        return frozen.user_attrs.get("constraints", [1.0] * len(space.constraints))

    constraints = violations if space.constraints else None

    with warnings.catch_warnings():
        # Optuna 5 deprecates constraints_func for Trial.set_constraint (removal in 7, which pyproject excludes); 4.x has only constraints_func
        warnings.simplefilter("ignore", FutureWarning)
        if config.sampler == "bayes":
            startup = max(2, min(10, config.trials // 3))
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, multivariate=True, constant_liar=True, constraints_func=constraints)
        if config.sampler == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, config.trials // 3)), constraints_func=constraints)
    return optuna.samplers.RandomSampler(seed=seed)  # grid and random trials are queued with their values


def _pruner(config):
    import optuna

    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def plan_trials(space: SearchSpace, config, base_doc: dict) -> list[dict]:
    """The parameter sets to queue: the shuffled grid (at most ``trials`` points), ``trials`` random draws
    (compound draws off the budget drawn again), or ``trials`` empty sets for adaptive samplers."""
    import optuna

    if config.sampler == "grid":
        points = space.grid()
        random.Random(config.seed).shuffle(points)
        return points[: config.trials]
    if config.sampler == "random":
        draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config.seed))
        points = []
        for _ in range(config.trials * 100):
            trial = draws.ask(space.distributions())
            draws.tell(trial, 0.0)
            try:
                space.overrides(trial.params, base_doc)
            except ValueError:
                continue
            points.append(trial.params)
            if len(points) == config.trials:
                break
        return points
    return [{} for _ in range(config.trials)]


def _fingerprint(recipe_name: str, base_doc: dict, space: SearchSpace, sampler: str) -> str:
    blob = json.dumps([recipe_name, base_doc, space.objectives, [str(c) for c in space.constraints],
                       {k: repr(v) for k, v in space.distributions().items()}, sampler], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def open_study(space: SearchSpace, config, base_doc: dict, recipe_name: str, out_dir: Path, progress=print):
    """Create the study and queue its trials, or join the existing one (another worker's, or an interrupted
    search); returns ``(study, storage, url)``. Joining a study made for another recipe or space is an error."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = config.storage or f"sqlite:///{(out_dir / 'study.db').resolve()}"
    name = config.study or f"{recipe_name}-{config.sampler}"
    storage = _storage(url, config)
    fingerprint = _fingerprint(recipe_name, base_doc, space, config.sampler)
    try:
        study = optuna.create_study(storage=storage, study_name=name, directions=space.directions,
                                    sampler=_sampler(config, space, config.seed), pruner=_pruner(config))
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(storage=storage, study_name=name, sampler=_sampler(config, space, config.seed + os.getpid()), pruner=_pruner(config))
        meta = _wait_for_meta(study, config.join_timeout_seconds)
        if meta.get("selection") != SELECTION:
            raise RecipeError(f"study {name!r} in {url} scored its trials on the test split (made before searches selected on the validation split); "
                              "pass --study NEW_NAME for a new search") from None
        if meta["fingerprint"] != fingerprint:
            raise RecipeError(f"study {name!r} in {url} was created for another recipe, space or sampler; pass --study NEW_NAME for a new search") from None
        extra = config.trials - meta["budget"] if config.sampler != "grid" else 0
        if extra > 0:  # a larger budget extends the search (do this from one worker)
            points = plan_trials(space, dataclasses.replace(config, trials=extra, seed=config.seed + meta["budget"]), base_doc)
            for params in points:
                study.enqueue_trial(params)
            study.set_user_attr(META_KEY, {**meta, "budget": meta["budget"] + len(points)})
            progress(f"[search {name}] budget extended by {len(points)} trials")
        progress(f"[search {name}] joined the study in {url}")
        return study, storage, url
    points = plan_trials(space, config, base_doc)
    for params in points:
        study.enqueue_trial(params)
    study.set_user_attr(META_KEY, {"fingerprint": fingerprint, "selection": SELECTION, "budget": len(points), "recipe": recipe_name, "sampler": config.sampler,
                                "objectives": list(space.objectives), "constraints": [str(c) for c in space.constraints]})
    progress(f"[search {name}] created in {url}: {len(points)} trials queued ({config.sampler})")
    return study, storage, url


def _wait_for_meta(study, timeout: float) -> dict:
    """The creator queues the trials before it writes the study's metadata: wait for it."""
    deadline = time.monotonic() + timeout
    while True:
        meta = study.user_attrs.get(META_KEY)
        if meta is not None:
            return meta
        if time.monotonic() > deadline:
            raise RecipeError(f"study {study.study_name!r} exists but was never set up by edgeopt (no {META_KEY!r} attribute after {timeout:.0f} s)")
        time.sleep(0.5)


def take_queued_trial(study, storage):
    """Move one WAITING trial to RUNNING (only one worker can win each) and return it, or None when none is left."""
    import optuna
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return optuna.Trial(study, trial_id), trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None, None
