"""Cost tables: a lookup-table sum that equals the built network's profile, expected cost, JSON, named errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgeopt.config import RecipeError
from edgeopt.costs import profile
from edgeopt.registry import UnknownNameError
from edgeopt.search.nas_cost import COST_MODELS, OpCostTable, cost_model, load_cost_table
from edgeopt.search.nas_space import SKIP, Architecture, build_network, random_architecture, tiny_space

OPS = ("ir_k3_e3", "ir_k5_e6", "ir_k3_e3_se0.25", SKIP)
SHAPE = (16, 16, 3)


@pytest.fixture(scope="module")
def space():
    return tiny_space(OPS)


@pytest.fixture(scope="module")
def tables(space):
    return {name: cost_model(name, space, SHAPE, 10) for name in ("macs", "params")}


def test_table_sum_equals_the_built_networks_profile(space, tables):
    rng = np.random.default_rng(0)
    archs = [random_architecture(space, rng) for _ in range(3)] + [Architecture((SKIP, "ir_k5_e6"))]
    for arch in archs:
        counted = profile(build_network(space, arch, SHAPE, 10))
        assert tables["macs"].predict(space, arch) == counted.macs
        assert tables["params"].predict(space, arch) == counted.params
    assert tables["macs"].blocks["block1a"][SKIP] == 0
    # a hand count: block2a ir_k3_e3 on 8x8x8 -> 4x4x16: expand 8*8*8*24, depthwise 4*4*24*9, project 4*4*24*16
    assert tables["macs"].blocks["block2a"]["ir_k3_e3"] == 8 * 8 * 8 * 24 + 4 * 4 * 24 * 9 + 4 * 4 * 24 * 16


def test_expected_cost_is_the_probability_weighted_sum(space, tables):
    table = tables["macs"]
    arch = Architecture(("ir_k5_e6", "ir_k3_e3_se0.25"))
    one_hot = [np.eye(len(b.ops))[b.ops.index(op)] for b, op in zip(space.blocks(), arch.choices)]
    assert table.expected(space, one_hot) == table.predict(space, arch)
    uniform = [np.full(len(b.ops), 1 / len(b.ops)) for b in space.blocks()]
    by_hand = table.fixed + sum(np.mean(list(table.blocks[b.name].values())) for b in space.blocks())
    assert table.expected(space, uniform) == pytest.approx(by_hand, rel=1e-12)


def test_table_round_trips_through_json(tmp_path, space, tables):
    path = tables["macs"].save(tmp_path / "macs.json")
    assert load_cost_table(path) == tables["macs"]
    assert [list(c) for c in load_cost_table(path).matrix(space)] == [list(c) for c in tables["macs"].matrix(space)]


def test_missing_costs_and_bad_values_are_named(space, tables):
    partial = OpCostTable("ms", {"block1a": {op: 1.0 for op in OPS}})
    with pytest.raises(ValueError, match="the ms table has no block block2a; it has: block1a"):
        partial.check(space)
    partial = OpCostTable("ms", {"block1a": {op: 1.0 for op in OPS}, "block2a": {"ir_k3_e3": 1.0}})
    with pytest.raises(ValueError, match="no cost for 'ir_k5_e6' at block2a"):
        partial.matrix(space)
    with pytest.raises(RecipeError, match=r"blocks.block1a.skip must be a finite cost >= 0, got -1"):
        OpCostTable.from_dict({"unit": "ms", "blocks": {"block1a": {"skip": -1}}})
    with pytest.raises(UnknownNameError, match="known cost models: latency, macs, params"):
        cost_model("latency_pixel9", space, SHAPE, 10)
    assert {"latency", "macs", "params"} <= set(COST_MODELS.names())
