"""The committed search benchmark (benchmarks/search.md / .csv, issue #21): trials were chosen on the validation
split, the test split was read once for each reported (Pareto) trial and for no other, the front is the front of
the data, and the table a reader compares models by shows the CSV's numbers. No TensorFlow: it reads files."""
from __future__ import annotations

import csv
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
VAL_IMAGES, TEST_IMAGES = 6000, 10000  # Fashion-MNIST's validation split (10% of 60,000) and test split


def _trials() -> list[dict]:
    with open(BENCH / "search.csv", newline="") as f:
        return list(csv.DictReader(f))


def _chosen_table() -> dict[int, list[str]]:
    """Rows of the "Chosen on validation, read once on test" table of search.md, by trial number."""
    text = (BENCH / "search.md").read_text()
    section = text.split("## Chosen on validation, read once on test", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    return {int(r[0]): [c.strip() for c in r] for r in rows}


def test_only_the_pareto_trials_read_the_test_split_and_every_trial_was_scored_on_validation():
    trials = _trials()
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert len(complete) >= 3
    for t in complete:
        assert int(t["val_samples"]) == VAL_IMAGES and t["accuracy_of"] == "tflite int8"
        assert (t["test_accuracy"] != "") == (t["pareto"] == "True"), f"trial {t['trial']}"
        if t["pareto"] == "True":
            assert int(t["test_samples"]) == TEST_IMAGES  # the whole test split, read once
    for t in trials:
        if t["state"] == "FAIL" and "ExportVerificationError" in t["note"]:
            assert float(re.search(r"on only ([0-9.]+)%", t["note"]).group(1)) < 98  # failed by the default gate


def test_the_pareto_trials_are_the_non_dominated_feasible_ones():
    feasible = [t for t in _trials() if t["state"] == "COMPLETE" and t["feasible"] == "True"]

    def dominated(t: dict) -> bool:
        a, ms = float(t["accuracy"]), float(t["latency_ms"])
        return any(float(o["accuracy"]) >= a and float(o["latency_ms"]) <= ms and (float(o["accuracy"]), float(o["latency_ms"])) != (a, ms)
                   for o in feasible)

    assert {t["trial"] for t in feasible if not dominated(t)} == {t["trial"] for t in _trials() if t["pareto"] == "True"}
    for t in _trials():
        if t["state"] == "COMPLETE" and t["feasible"] != "True":
            assert float(t["latency_ms"]) > 1.0 and t["pareto"] != "True"  # the space's constraint: latency_ms <= 1.0


def test_the_chosen_table_shows_the_csv_numbers():
    table = _chosen_table()
    pareto = {int(t["trial"]): t for t in _trials() if t["pareto"] == "True"}
    assert set(table) == set(pareto)
    for number, t in pareto.items():
        _, val, test, diff, ms, _ = table[number]
        assert val == f"{100 * float(t['accuracy']):.2f}%" and test == f"{100 * float(t['test_accuracy']):.2f}%"
        assert diff == f"{100 * (float(t['test_accuracy']) - float(t['accuracy'])):+.2f}"
        assert ms == f"{float(t['latency_ms']):.2f}"
