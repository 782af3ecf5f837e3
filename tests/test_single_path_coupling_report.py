"""benchmarks/single_path_coupling.py: its page comes from the JSON (no TensorFlow), and the update count is right."""
import json
from pathlib import Path

import pytest

from benchmarks.single_path_coupling import markdown, updates_per_candidate
from edgeopt.search.nas_space import Architecture, NasSpace


def _run(variant, seed, top1, ops=("ir_k3_e6", "ir_k5_e6"), updates=75.0, archs=150):
    return {"variant": variant, "seed": seed, "ops": list(ops), "train_top1": [top1 / 2, top1], "train_loss": [2.0, 1.0 + seed / 10],
            "architectures": archs, "updates_per_candidate": updates, "s": 140.0}


def _data(runs):
    return {"machine": "test machine", "source": "benchmarks/single_path_coupling.py", "epochs": 2, "steps_per_epoch": 75,
            "config": {"learning_rate": 0.004, "weight_decay": 0.05, "label_smoothing": 0.1}, "runs": runs}


def test_page_gives_mean_and_std_over_seeds_and_the_gap_verdict():
    runs = [_run("one", s, 0.77 + s / 100, ops=("ir_k3_e6",), updates=150.0, archs=1) for s in range(3)]
    runs += [_run("tied", s, 0.70 + s / 100, archs=2) for s in range(3)]
    runs += [_run("independent", s, 0.30 + s / 100) for s in range(3)]
    md = markdown(_data(runs))
    assert "| one candidate per block (MobileNetV2 0.35) | ir_k3_e6 | 3 | 39.00 ± 0.50 | 78.00 ± 1.00 | 1.100 ± 0.100 | 150.0 | 1 |" in md
    assert "| two candidates, each block draws its own (single-path training) | ir_k3_e6 ir_k5_e6 | 3 | 15.50 ± 0.50 | 31.00 ± 1.00 |" in md
    # gap 40 points; two standard errors of the difference 2 * sqrt(2 * 0.01^2 / 3) = 1.63 points
    assert "end epoch 2 40.00 points below blocks drawn together (31.00 ± 1.00 vs 71.00 ± 1.00; two standard errors of the difference: 1.63, beyond noise)" in md
    assert "halving the updates per candidate costs 7.00 points, drawing the blocks independently 40.00 more." in md
    assert "mostly the independent draws" in md


def test_no_conclusion_when_the_gap_is_within_noise():
    runs = [_run("tied", s, 0.50 + s / 10) for s in range(3)] + [_run("independent", s, 0.49 + s / 10) for s in range(3)]
    md = markdown(_data(runs))
    assert "within noise" in md and "mostly the independent draws" not in md


def test_updates_per_candidate_counts_the_searchable_blocks_draws():
    space = NasSpace(stages=({"channels": 8, "stride": 1, "repeats": 1}, {"channels": 8, "stride": 1, "repeats": 2}), head_channels=None,
                     ops=("ir_k3_e3", "ir_k5_e3"))
    blocks = space.blocks()
    first = [b.ops[0] for b in blocks]
    second = [b.ops[-1] for b in blocks]
    draws = [Architecture(first), Architecture(first), Architecture(first), Architecture(second)]
    searchable = sum(len(b.ops) > 1 for b in blocks)
    assert searchable >= 1
    # each searchable block: its first op drawn 3 times, its last once (both counted, once each per block) -> mean 2
    assert updates_per_candidate(space, draws) == pytest.approx(2.0)


def test_committed_page_is_the_committed_data_rendered():
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if not (folder / "single_path_coupling.json").exists():
        pytest.skip("benchmarks/single_path_coupling.json is not committed yet")
    assert (folder / "single_path_coupling.md").read_text() == markdown(json.loads((folder / "single_path_coupling.json").read_text()))


def test_shared_weights_row_and_sentence():
    runs = [_run("tied", s, 0.70 + s / 100, archs=2) for s in range(3)]
    runs += [_run("independent", s, 0.30 + s / 100) for s in range(3)]
    runs += [_run("shared", s, 0.60 + s / 100) for s in range(3)]
    md = markdown(_data(runs))
    assert "| two candidates, each block draws its own, weights shared (share_weights) | ir_k3_e6 ir_k5_e6 | 3 | 30.50 ± 0.50 | 61.00 ± 1.00 |" in md
    assert ("with blocks drawn independently: 61.00 ± 1.00, +30.00 points against separate weights (two standard errors 1.63, beyond noise), "
            "-10.00 against blocks drawn together.") in md
