"""Single-path supernet training: uniform, reproducible paths; a step trains the drawn path's weights and nothing
else; exact resume after a crash; named config errors."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.config import RecipeError
from edgeopt.search.darts import read_checkpoint
from edgeopt.search.nas_space import SKIP, tiny_space
from edgeopt.search.single_path import CHECKPOINT_FILE, SinglePathConfig, sample_path, train_single_path
from edgeopt.search.supernet import Supernet

OPS = ("ir_k3_e3", "ir_k5_e6", SKIP)
SPACE = tiny_space(OPS)  # block1a: 3 candidates, block2a: 2 (no skip)


def test_paths_are_uniform_and_reproducible():
    paths = [sample_path(SPACE, 3, step) for step in range(3000)]
    assert paths[:50] == [sample_path(SPACE, 3, step) for step in range(50)]
    assert paths[:50] != [sample_path(SPACE, 4, step) for step in range(50)]
    for i, block in enumerate(SPACE.blocks()):
        counts = Counter(p.choices[i] for p in paths)
        assert set(counts) == set(block.ops)
        # 3,000 draws: a share's standard deviation is at most 0.0091; 4.4 of them is 0.04
        for op in block.ops:
            assert abs(counts[op] / len(paths) - 1 / len(block.ops)) < 0.04, (block.name, op, counts)


def test_a_step_trains_the_drawn_path_only(digits_splits):
    config = SinglePathConfig(epochs=1, steps_per_epoch=1, seed=5)
    keras.utils.set_random_seed(config.seed)  # what train_single_path does before building its supernet: the same initial weights
    before = Supernet(SPACE, digits_splits.preprocessing.input_shape, 10, seed=config.seed).state()
    _, supernet = train_single_path(SPACE, digits_splits, config, log=lambda line: None)
    after = supernet.state()
    arch = sample_path(SPACE, config.seed, 0)
    used = {"stem", "head"} | {f"{b.name}/{op}" for b, op in zip(SPACE.blocks(), arch.choices) if op != SKIP}
    path_keys = {f"w/{key}/{i}" for key, m in supernet.parts() if key in used for i, _ in enumerate(m.weights)}
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    assert changed == path_keys  # the path's weights and batch-norm statistics; other candidates, alphas and the generator as they were
    assert any(op != SKIP for op in arch.choices)


class _Crash(Exception):
    pass


def test_training_resumes_after_a_crash_and_a_finished_one_loads(tmp_path, digits_splits):
    config = SinglePathConfig(epochs=2, steps_per_epoch=2, seed=1)

    def crash(line):
        raise _Crash(line)

    with pytest.raises(_Crash, match="single-path epoch 1/2"):
        train_single_path(SPACE, digits_splits, config, checkpoint_dir=tmp_path, log=crash)
    meta, _ = read_checkpoint(tmp_path / CHECKPOINT_FILE)
    lines = []
    result, supernet = train_single_path(SPACE, digits_splits, config, checkpoint_dir=tmp_path, log=lines.append)
    assert result.resumed_at_epoch == 1 and [r.epoch for r in result.history] == [1, 2] and len(lines) == 1
    assert vars(result.history[0]) == meta["history"][0] and result.steps_per_epoch == 2
    again, loaded = train_single_path(SPACE, digits_splits, config, checkpoint_dir=tmp_path, log=crash)  # finished: nothing runs
    assert again.resumed_at_epoch == 2 and again.history == result.history
    for key, value in supernet.state().items():
        np.testing.assert_array_equal(loaded.state()[key], value, err_msg=key)
    with pytest.raises(ValueError, match="another config"):
        train_single_path(SPACE, digits_splits, SinglePathConfig(epochs=2, steps_per_epoch=2, seed=2), checkpoint_dir=tmp_path)


@pytest.mark.parametrize("data, message", [
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"steps_per_epoch": 0}, "steps_per_epoch must be >= 1 or none"),
    ({"clip_norm": 0}, "clip_norm must be > 0 or none"),
    ({"optimizer": "lion"}, "optimizer must be one of adam, sgd, rmsprop"),
    ({"warmup_fraction": 1.0}, r"warmup_fraction must be in \[0, 1\)"),
    ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\)"),
    ({"epoch": 3}, "epoch is not a known field"),
])
def test_bad_config_fields_are_named(data, message):
    with pytest.raises(RecipeError, match=message):
        SinglePathConfig.from_dict(data)


def test_shared_weights_stay_shared_through_training(digits_splits):
    config = SinglePathConfig(epochs=1, steps_per_epoch=4, seed=2, share_weights=True)
    _, supernet = train_single_path(SPACE, digits_splits, config, log=lambda line: None)
    fresh = SinglePathConfig(epochs=1, steps_per_epoch=4, seed=2)
    _, unshared = train_single_path(SPACE, digits_splits, fresh, log=lambda line: None)
    drawn = {op for step in range(4) for op in sample_path(SPACE, 2, step).choices}
    assert {"ir_k3_e3", "ir_k5_e6"} <= drawn  # both candidates trained in these steps
    for i, block in enumerate(supernet.blocks):
        if "ir_k3_e3" not in block.ops or "ir_k5_e6" not in block.ops:
            continue
        for net, shared in ((supernet, True), (unshared, False)):
            small, big = (net.candidates[i][block.ops.index(op)] for op in ("ir_k3_e3", "ir_k5_e6"))
            dw_small = small.get_layer(f"{block.name}_dwconv").depthwise_kernel.numpy()
            dw_big = big.get_layer(f"{block.name}_dwconv").depthwise_kernel.numpy()
            project_small = small.get_layer(f"{block.name}_project_conv").kernel.numpy()
            project_big = big.get_layer(f"{block.name}_project_conv").kernel.numpy()
            same = (np.array_equal(dw_small, dw_big[1:4, 1:4, : dw_small.shape[2]])
                    and np.array_equal(project_small, project_big[:, :, : project_small.shape[2]]))
            assert same == shared, (block.name, shared)


def test_share_weights_is_part_of_the_checkpoint_fingerprint(tmp_path, digits_splits):
    train_single_path(SPACE, digits_splits, SinglePathConfig(epochs=1, steps_per_epoch=1), checkpoint_dir=tmp_path, log=lambda line: None)
    with pytest.raises(ValueError, match="another config \\(share_weights\\)"):
        train_single_path(SPACE, digits_splits, SinglePathConfig(epochs=1, steps_per_epoch=1, share_weights=True), checkpoint_dir=tmp_path,
                          log=lambda line: None)
