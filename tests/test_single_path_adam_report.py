"""benchmarks/single_path_adam.py's page: its table and sentence come from the JSON (no TensorFlow)."""
import json
from pathlib import Path

from benchmarks.single_path_adam import markdown

RUN = {"global": {"train_top1": [0.111, 0.122], "train_loss": [2.5, 2.4], "mnv2_oneshot": 0.0975, "s": 390.0},
       "per-variable": {"train_top1": [0.133, 0.1644], "train_loss": [2.45, 2.25], "mnv2_oneshot": 0.1733, "s": 410.0}}


def _data(*runs):
    return {"machine": "test machine", "config": {"seed": 0}, "runs": [{"source": f"source {i}", "variants": r} for i, r in enumerate(runs)]}


def test_page_shows_each_run_and_variant_from_the_data():
    md = markdown(_data(RUN))
    assert "| 1 | Keras Adam (global-step bias correction) | 11.10 | 12.20 | 2.5000 | 2.4000 | 9.75 | 390 |" in md
    assert "| 1 | PerVariableStepAdam (per-variable steps) | 13.30 | 16.44 | 2.4500 | 2.2500 | 17.33 | 410 |" in md
    assert "Run 1: source 0." in md and "ahead in 1 of 1 runs (last-epoch training top-1 gaps +4.24 points)" in md
    assert "varied by 0.00 points between runs. " in md and "within noise" not in md


def test_verdict_is_within_noise_when_runs_of_one_optimizer_differ_more_than_the_gap():
    other = {**RUN, "global": {**RUN["global"], "train_top1": [0.1, 0.17]}}  # gap -0.56 point; Keras' Adam moved 4.80
    md = markdown(_data(RUN, other))
    assert "ahead in 1 of 2 runs (last-epoch training top-1 gaps +4.24, -0.56 points)" in md and "varied by 4.80 points between runs: within noise." in md


def test_committed_page_is_the_committed_data_rendered():
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    assert (folder / "single_path_adam.md").read_text() == markdown(json.loads((folder / "single_path_adam.json").read_text()))
