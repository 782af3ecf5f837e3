"""benchmarks/oneshot_ranking.py's page: its table and verdict come from the JSON (no TensorFlow)."""
import json
from pathlib import Path

import pytest

from benchmarks.oneshot_ranking import markdown


def _data(tau: float, p: float) -> dict:
    # stand-alone accuracy falls with latency (tau -1), both one-shot scores rise with it (tau +1)
    cands = [{"architecture": ["ir_k3_e1"], "predicted_ms": 0.3 + k / 10, "val_top1": 0.87 - k / 100, "separate_oneshot_val": 0.30 + k / 200,
              "shared_oneshot_val": 0.70 + k / 100} for k in range(3)]
    return {"machine": "test machine", "source": "benchmarks/oneshot_ranking.py", "steps_per_epoch": 446, "train_s": 1200.0, "score_s": 300.0,
            "config": {"epochs": 2, "learning_rate": 0.004, "weight_decay": 0.05, "seed": 0}, "history": [0.5, 0.7123],
            "candidates": cands, "shared": {"tau": tau, "p": p}, "separate": {"tau": 0.05, "p": 0.72, "epochs": 4, "history": [0.2, 0.327]}}


def test_table_rows_and_a_verdict_beyond_chance():
    md = markdown(_data(0.45, 0.001))
    assert "| separate weights (benchmarks/nas.json) | 4 | 32.70 | 30.00-31.00 | 0.05 | 0.72 |" in md
    assert "| shared weights (share_weights) | 2 | 71.23 | 70.00-72.00 | 0.45 | 0.00 |" in md
    assert "892 steps in 20 min" in md and "validation top-1 85.00-87.00%" in md and "span 2.00 points" in md
    assert "beyond chance (tau 0.45, p 0.00) where separate weights did not (tau 0.05, p 0.72), with 2 epochs against 4." in md
    assert "| 0.45 | 0.00 | 1.00 (p 0.33) |" in md  # tau 1 over 3 networks: exact p = 2 / 3! = 0.33
    assert "give tau -1.00 (p 0.33) and the shared one-shot scores 1.00 (p 0.33): the two lean in opposite directions" in md


def test_no_claim_when_the_ranking_is_not_beyond_chance():
    md = markdown(_data(0.20, 0.2))
    assert "does not agree with stand-alone training beyond chance either at this budget." in md and "where separate weights did not" not in md
    assert "if anything it is reversed" in markdown(_data(-0.25, 0.06))


def test_committed_page_is_the_committed_data_rendered():
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    if not (folder / "oneshot_ranking.json").exists():
        pytest.skip("benchmarks/oneshot_ranking.json is not committed yet")
    assert (folder / "oneshot_ranking.md").read_text() == markdown(json.loads((folder / "oneshot_ranking.json").read_text()))
