"""The recipe side of saliency pruning: ``prune_saliency`` parses with field paths and takes its fine-tuning from
the stage's training keys; ``prune_structured`` hands the training split to data criteria."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgeopt._keras import keras, tf
from edgeopt.pipeline.recipe import RecipeError, parse_recipe
from edgeopt.pipeline.stage import StageConfig
from edgeopt.pipeline.stages.compress import prune_structured_stage
from edgeopt.pipeline.stages.saliency import prune_saliency_stage
from edgeopt.compress.structured import StructuredConfig
from edgeopt.train import TrainConfig

L = keras.layers
HEAD = '[model]\nname = "mobilenet_v1_tiny"\n[train]\nepochs = 3\nlearning_rate = 0.01\n[[stages]]\ntype = "train"\n'
TRAIN = TrainConfig(epochs=1, steps_per_epoch=4, learning_rate=1e-3, cosine=False, verbose=0)


def convnet() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = L.ReLU(name="relu1")(L.BatchNormalization(name="bn1")(L.Conv2D(8, 3, strides=2, padding="same", name="conv1")(inp)))
    x = L.ReLU(name="relu2")(L.BatchNormalization(name="bn2")(L.Conv2D(8, 3, strides=2, padding="same", name="conv2")(x)))
    return keras.Model(inp, L.Dense(10, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))


def test_prune_saliency_stage_parses_with_field_paths():
    recipe = parse_recipe(HEAD + '[[stages]]\ntype = "prune_saliency"\ncriterion = "obd_fisher"\nrounds = 2\ntarget_sparsity = 0.8\n'
                          'epochs = 1\nsaliency = { batches = 2 }\n', source="r.toml")
    stage = recipe.stages[1].config
    assert (stage.technique.criterion, stage.technique.rounds, stage.technique.saliency.batches) == ("obd_fisher", 2, 2)
    assert (stage.train.epochs, stage.train.learning_rate) == (1, 0.01)  # stage key over [train]
    profile = parse_recipe(HEAD + '[[stages]]\ntype = "prune_saliency"\nlayer_sparsity = { conv2 = 0.9, fc = 0.5 }\n', source="r.toml")
    assert profile.stages[1].config.technique.layer_sparsity == {"conv2": 0.9, "fc": 0.5}
    with pytest.raises(RecipeError, match=r"stages\[1\]\.layer_sparsity is set with fraction or target_sparsity"):
        parse_recipe(HEAD + '[[stages]]\ntype = "prune_saliency"\nlayer_sparsity = { fc = 0.5 }\ntarget_sparsity = 0.5\n', source="r.toml")
    with pytest.raises(RecipeError, match=r"stages\[1\]\.train is not a known field"):
        parse_recipe(HEAD + '[[stages]]\ntype = "prune_saliency"\ntrain = { epochs = 2 }\n', source="r.toml")
    with pytest.raises(RecipeError, match=r"stages\[1\]\.criterion must be one of activation, apoz, fpgm"):
        parse_recipe(HEAD + '[[stages]]\ntype = "prune_saliency"\ngranularity = "filter"\ncriterion = "snip"\n', source="r.toml")
    with pytest.raises(RecipeError, match=r"stages\[1\]\.criterion must be one of activation"):
        parse_recipe(HEAD + '[[stages]]\ntype = "prune_structured"\ncriterion = "snip"\n', source="r.toml")


def test_stages_run_data_criteria_on_the_training_split(digits_splits):
    ctx = SimpleNamespace(splits=digits_splits, strategy=tf.distribute.get_strategy(), evaluate_test=False)
    model = convnet()
    technique = parse_recipe(HEAD + '[[stages]]\ntype = "prune_saliency"\ngranularity = "filter"\ncriterion = "taylor"\nrounds = 1\n'
                             'fraction = 0.5\nmin_channels = 2\n', source="r.toml").stages[1].config.technique
    outcome = prune_saliency_stage(ctx, model, StageConfig(technique, TRAIN))
    assert [outcome.model.get_layer(n).filters for n in ("conv1", "conv2")] == [4, 4]
    assert outcome.metrics["remaining"] == 0.5 and [r["round"] for r in outcome.metrics["rounds"]] == [0, 1]
    assert "test_top1" not in outcome.metrics and outcome.metrics["params"] < model.count_params()

    smaller = prune_structured_stage(ctx, model, StageConfig(StructuredConfig(ratio=0.5, criterion="apoz", min_channels=2), TRAIN)).model
    assert [smaller.get_layer(n).filters for n in ("conv1", "conv2")] == [4, 4]
