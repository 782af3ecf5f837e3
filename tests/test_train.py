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


def test_softmax_is_detected_through_a_qat_wrapper():
    from edgeopt.compress.quantize import QATConfig, quantize
    from edgeopt.train import ends_in_softmax, loss_for

    model = models.create("mobilenet_v1_tiny", input_shape=(16, 16, 3), classes=10)
    qat = quantize(model, QATConfig())
    assert ends_in_softmax(model) and ends_in_softmax(qat)
    assert loss_for(qat).get_config()["from_logits"] is False
    logits = models.create("mobilenet_v1_tiny", input_shape=(16, 16, 3), classes=10, classifier_activation=None)
    assert not ends_in_softmax(quantize(logits, QATConfig()))
