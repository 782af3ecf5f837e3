"""The sparse_train recipe stage: a tiny recipe trains RigL from scratch, the masked layers hold their exact share of
zeros in the saved model and in the int8 .tflite; bad options are named by their path when the recipe is read."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.compress.masks import kernel_of
from edgeopt.compress.sparse_init import layer_sparsities, zero_counts
from edgeopt.io import load_model_safe
from edgeopt.pipeline import run_recipe
from edgeopt.pipeline.recipe import RecipeError, parse_recipe
from edgeopt.tflite.flatbuffer import constant_weights

from conftest import make_recipe, write_recipe

STAGE = {"type": "sparse_train", "method": "rigl", "sparsity": 0.8, "options": {"distribution": "erk", "update_every": 2, "end_fraction": 1.0},
         "epochs": 1, "steps_per_epoch": 4}


EXPORT = {"type": "export", "mode": "int8", "min_agreement": 0.0, "baseline": False, "num_calibration": 32, "verify_samples": 32}


def _run(tmp_path, stages) -> tuple[dict, dict[str, np.ndarray]]:
    """Run a tiny recipe; returns its report and the kernels of the masked layers of the saved sparse model."""
    report = run_recipe(write_recipe(tmp_path / "sparse.toml", make_recipe(name="sparse", data={"limit_test": 64}, stages=stages)),
                        out_dir=tmp_path / "runs", artifacts_dir=None, progress=lambda s: None)
    stage = report["stages"][0]
    model = load_model_safe(tmp_path / "runs" / "sparse" / stage["dir"] / stage["files"]["model"])
    return report, {n: kernel_of(model, n).numpy() for n in stage["metrics"]["layer_sparsity"]}


def test_a_tiny_recipe_trains_rigl_from_scratch_with_exact_zeros(tmp_path):
    report, kernels = _run(tmp_path, [STAGE])
    metrics = report["stages"][0]["metrics"]
    assert report["stages"][0]["type"] == "sparse_train" and metrics["mask_updates"] == 1 and metrics["mask_changed_fraction"] > 0 and metrics["collapsed_layers"] == {}  # step 2 (at 4 the cosine is 0)
    shapes = {n: k.shape for n, k in kernels.items()}
    counts = zero_counts(shapes, layer_sparsities(shapes, 0.8, "erk"))
    assert metrics["layer_sparsity"] == {n: round(c / np.prod(shapes[n]), 4) for n, c in counts.items()}  # each layer its ERK share
    zeros = {n: int((k == 0).sum()) for n, k in kernels.items()}
    assert all(counts[n] <= zeros[n] <= counts[n] * 1.01 for n in counts)  # the saved kernels: zero where masked (a grown weight may still be 0)
    assert "stem_conv" not in kernels and "classifier" in kernels  # the stem stays dense (dense_first)
    assert metrics["masked_sparsity"] == pytest.approx(sum(counts.values()) / sum(int(np.prod(s)) for s in shapes.values()), abs=1e-4)


@pytest.mark.slow  # the int8 conversion alone takes 10-30 s on 2 cores
def test_the_zeros_of_sparse_training_reach_the_int8_file(tmp_path):
    report, kernels = _run(tmp_path, [STAGE, EXPORT])
    export = report["stages"][1]
    tflite = (tmp_path / "runs" / "sparse" / export["dir"] / next(iter(export["files"].values()))).read_bytes()
    int8 = [w.values for w in constant_weights(tflite, min_size=16) if w.dtype == "int8"]
    for name, kernel in kernels.items():  # some int8 kernel of the same shape is zero wherever the Keras kernel is
        same = [w for w in int8 if w.shape == kernel.shape]
        assert any(np.all(w[kernel == 0] == 0) for w in same), f"{name}: no int8 kernel of shape {kernel.shape} keeps its zeros"


@pytest.mark.parametrize("fields, message", [
    ('method = "lth"\n', r"stages\[1\]\.method must be one of early_bird, grasp, rigl, set, snip; got 'lth'"),
    ('method = "rigl"\noptions = { drop_fraction = 1.5 }\n', r"stages\[1\]\.options\.drop_fraction must be in \(0, 1\)"),
    ('method = "snip"\noptions = { temperature = 2.0 }\n', r"stages\[1\]\.options\.temperature is not a known field"),
    ('method = "set"\noptions = { sparsity = 0.5 }\n', r"stages\[1\]\.options\.sparsity is set on the stage itself"),
    ('method = "rigl"\nsparsity = 1.0\n', r"stages\[1\]\.sparsity must be in \(0, 1\)"),
])
def test_bad_stage_settings_are_named_when_the_recipe_is_read(fields, message):
    head = '[model]\nname = "mobilenet_v1_tiny"\n[[stages]]\ntype = "train"\n[[stages]]\ntype = "sparse_train"\n'
    with pytest.raises(RecipeError, match=message):
        parse_recipe(head + fields, source="r.toml")


def test_stage_options_reach_the_method_config():
    r = parse_recipe('[model]\nname = "mobilenet_v1_tiny"\n[[stages]]\ntype = "sparse_train"\nmethod = "grasp"\nsparsity = 0.7\n'
                     'options = { distribution = "uniform", temperature = 50.0 }\nepochs = 3\n', source="r.toml")
    cfg = r.stages[0].config
    method = cfg.technique.method_config(cfg.train)
    assert (method.sparsity, method.distribution, method.temperature, method.train.epochs) == (0.7, "uniform", 50.0, 3)
