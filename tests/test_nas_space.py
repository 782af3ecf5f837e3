"""The search space as data: candidates per block (skip rules), architectures (JSON, Optuna params), the builder."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt import models
from edgeopt.config import RecipeError
from edgeopt.search.nas_space import (DEFAULT_OPS, SKIP, Architecture, NasSpace, StageSpec, build_network, mobilenet_v2_architecture,
                                      mobilenet_v2_space, parse_op, random_architecture, tiny_space)


def test_default_ops_are_kernels_by_expansions_with_and_without_se_and_skip():
    specs = [parse_op(op) for op in DEFAULT_OPS if op != SKIP]
    assert len(DEFAULT_OPS) == 13 and DEFAULT_OPS[-1] == SKIP
    assert sorted((s.kernel, s.expand, s.se) for s in specs) == sorted((k, e, se) for k in (3, 5, 7) for e in (3.0, 6.0) for se in (0.0, 0.25))
    assert parse_op(SKIP) is None


def test_skip_only_where_a_block_keeps_stride_and_channels():
    space = NasSpace((StageSpec(8, 1, 2), StageSpec(16, 2, 2), StageSpec(16, 1, 1)), "cn_k3_s1_c8", 32, ("ir_k3_e3", SKIP))
    skips = {b.name: SKIP in b.ops for b in space.blocks()}
    # block1a 8->8 s1, block1b 8->8, block2a 8->16 s2, block2b 16->16, block3a 16->16 s1
    assert skips == {"block1a": True, "block1b": True, "block2a": False, "block2b": True, "block3a": True}
    assert [(b.in_channels, b.channels, b.stride) for b in space.blocks()] == [(8, 8, 1), (8, 8, 1), (8, 16, 2), (16, 16, 1), (16, 16, 1)]
    assert space.size == 2 * 2 * 1 * 2 * 2


def test_a_shape_changing_block_with_only_skip_is_an_error_naming_its_stage():
    with pytest.raises(RecipeError, match=r"stages\[1\]: block block2a changes stride or channels, so it cannot skip"):
        NasSpace.from_dict({"stem": "cn_k3_s1_c8", "stages": [{"channels": 8}, {"channels": 16, "stride": 2, "ops": ["skip"]}]})


@pytest.mark.parametrize("data, message", [
    ({"stages": [{"channels": 0}]}, r"stages\[0\]\.channels must be >= 1"),
    ({"stages": [{"channels": 8, "stride": 3}]}, r"stages\[0\]\.stride must be 1 or 2"),
    ({"stages": [{"channels": 8}], "ops": ["ir_k3_c8"]}, r"ops\[0\]: operation 'ir_k3_c8': token 'c8' cannot be chosen"),
    ({"stages": [{"channels": 8}], "ops": ["sh_k3"]}, r"ops\[0\]: operation 'sh_k3' is not 'skip' or a block of kind"),
    ({"stages": [{"channels": 8}], "ops": ["skip", "skip"]}, r"ops lists an operation twice"),
    ({"stages": [{"channels": 8}], "stem": "ir_k3_s2_c8"}, r"stem must be a plain convolution"),
    ({"stages": [{"channels": 8}], "width": 0}, r"width must be > 0"),
    ({"stages": [{"channels": 8, "kernel": 3}]}, r"stages\[0\]\.kernel is not a known field"),
])
def test_bad_space_fields_are_named(data, message):
    with pytest.raises(RecipeError, match=message):
        NasSpace.from_dict(data)


def test_space_round_trips_through_plain_data():
    space = mobilenet_v2_space(width=0.5)
    assert NasSpace.from_dict(space.to_dict()) == space
    assert NasSpace.from_dict(space.to_dict()).blocks() == space.blocks()


def test_architecture_json_and_optuna_params_round_trip():
    space = tiny_space()
    arch = random_architecture(space, np.random.default_rng(3))
    assert Architecture.from_json(arch.to_json()) == arch
    params = arch.to_params(space)
    assert list(params) == ["block1a", "block2a"]
    assert Architecture.from_params(space, params) == arch


def test_architecture_check_names_the_block_and_its_candidates():
    space = tiny_space()
    with pytest.raises(ValueError, match=r"choices\[1\] \(block2a\) is 'skip', not one of its candidates: ir_k3_e3"):
        Architecture(("ir_k3_e3", SKIP)).check(space)
    with pytest.raises(ValueError, match="choices has 1 operations but the space has 2 blocks"):
        Architecture(("ir_k3_e3",)).check(space)


def test_built_network_has_the_chosen_operations_named_like_the_zoo():
    space = tiny_space()
    model = build_network(space, Architecture((SKIP, "ir_k7_e6_se0.25")), (16, 16, 3), 10)
    names = [layer.name for layer in model.layers]
    assert not [n for n in names if n.startswith("block1a")]  # skip: no layers
    assert model.get_layer("block2a_dwconv").kernel_size == (7, 7)
    assert model.get_layer("block2a_dwconv").strides == (2, 2)
    assert model.get_layer("block2a_expand_conv").filters == 8 * 6
    assert model.get_layer("block2a_se_reduce").filters == 8 // 4  # 0.25 of the block's input channels
    assert model.get_layer("block2a_project_conv").filters == 16
    for name in ("stem_conv", "head_conv", "avg_pool", "classifier", "predictions"):
        assert name in names
    # the input shapes the space computes are the ones the network has
    shapes = space.input_shapes((16, 16, 3))
    assert shapes == ((8, 8, 8), (8, 8, 8), (4, 4, 16))
    assert tuple(model.get_layer("block2a_expand_conv").input.shape[1:]) == shapes[1]
    assert tuple(model.get_layer("head_conv").input.shape[1:]) == shapes[2]


def test_hand_designed_mobilenet_v2_is_a_point_of_its_space():
    """MobileNetV2 (the zoo's, small-input form) = ir_k3_e6 in every searchable block: same layers, same weights' shapes."""
    space = mobilenet_v2_space(width=0.5)
    assert len(space.blocks()) == 17 and not space.blocks()[0].searchable and space.blocks()[0].ops == ("ir_k3_e1",)
    ours = build_network(space, mobilenet_v2_architecture(space), (32, 32, 3), 10)
    zoo = models.create("mobilenet_v2", input_shape=(32, 32, 3), classes=10, alpha=0.5)
    assert [layer.name for layer in ours.layers] == [layer.name for layer in zoo.layers]
    assert [tuple(w.shape) for w in ours.weights] == [tuple(w.shape) for w in zoo.weights]
