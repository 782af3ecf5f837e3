from edgeopt import models
from edgeopt.train import TrainConfig, evaluate, fit


def test_tiny_model_learns_digits_well_above_chance(digits_splits):
    model = models.create("mobilenet_v1_tiny", input_shape=digits_splits.preprocessing.input_shape, classes=10)
    result = fit(model, digits_splits, TrainConfig(epochs=8, learning_rate=3e-3, verbose=0))
    test = evaluate(model, digits_splits.test)
    assert test["samples"] == 359
    assert test["top1"] > 0.6, test  # chance is 0.1
    assert result.history["loss"][-1] < result.history["loss"][0]


def test_train_config_validates():
    import pytest

    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig(learning_rate=0)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lion")
