"""One-shot scoring: batch-norm recalibration against NumPy, scores of sub-networks without retraining."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt._keras import keras
from edgeopt.search.nas_space import SKIP, Architecture, tiny_space
from edgeopt.search.oneshot import calibration_batches, oneshot_score, recalibrate_batch_norm
from edgeopt.search.supernet import Supernet

OPS = ("ir_k3_e3", "ir_k5_e6_se0.25", SKIP)


@pytest.fixture(scope="module")
def supernet(digits_splits):
    keras.utils.set_random_seed(0)
    return Supernet(tiny_space(OPS), digits_splits.preprocessing.input_shape, 10)


def test_recalibration_averages_batch_statistics(supernet, digits_arrays):
    x = digits_arrays["train"][0][:96]
    batches = [x[:32], x[32:64], x[64:]]
    model = supernet.subnet(Architecture(("ir_k5_e6_se0.25", "ir_k3_e3")), classifier_activation=None)
    recalibrate_batch_norm(model, batches)
    stem_bn = model.get_layer("stem_bn")
    features = keras.Model(model.input, model.get_layer("stem_conv").output)
    per_batch = [features(b).numpy().reshape(-1, stem_bn.moving_mean.shape[0]) for b in batches]
    np.testing.assert_allclose(stem_bn.moving_mean.numpy(), np.concatenate(per_batch).mean(0), atol=1e-5)
    np.testing.assert_allclose(stem_bn.moving_variance.numpy(), np.mean([f.var(0, ddof=1) for f in per_batch], 0), rtol=1e-4, atol=1e-6)
    assert stem_bn.momentum == 0.9  # put back
    # a later layer sees the recalibrated earlier ones: block1a's last batch norm averages its inputs over the same images
    bn = model.get_layer("block1a_project_bn")
    before = keras.Model(model.input, model.get_layer("block1a_project_conv").output)
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.concatenate([before(b, training=True).numpy().reshape(-1, 8) for b in batches]).mean(0),
                               atol=1e-5)


def test_oneshot_score_is_the_recalibrated_subnets_top1(supernet, digits_splits, digits_arrays):
    arch = Architecture((SKIP, "ir_k5_e6_se0.25"))
    calibration = calibration_batches(digits_splits, 3)
    assert [c.shape[0] for c in calibration] == [32, 32, 32]
    np.testing.assert_array_equal(calibration[0], calibration_batches(digits_splits, 1)[0])  # the same images every call
    state = supernet.state()
    score = oneshot_score(supernet, arch, digits_splits, calibration=calibration)
    for key, value in supernet.state().items():  # scoring never changes the supernet
        np.testing.assert_array_equal(value, state[key], err_msg=key)
    model = recalibrate_batch_norm(supernet.subnet(arch, classifier_activation=None), calibration)
    x, y = digits_arrays["val"]
    assert score == float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y))
    with pytest.raises(ValueError, match="never scores on the test split"):
        oneshot_score(supernet, arch, digits_splits, calibration=calibration, split="test")
