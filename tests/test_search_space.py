"""Search spaces: parsing with field-named errors, recipe paths, grids, compound scaling, constraints."""
from __future__ import annotations

import pytest

from edgeopt.config import RecipeError
from edgeopt.report import pareto_front
from edgeopt.search.space import Constraint, apply_overrides, parse_search_space

SPACE = """
objectives = ["accuracy", "latency_ms"]
constraints = ["latency_ms <= 5", "accuracy >= 0.8"]
[params]
"model.knobs.alpha" = { choices = [0.25, 0.5] }
"data.image_size" = { low = 24, high = 40, step = 8 }
"train.learning_rate" = { low = 1e-4, high = 1e-2, log = true }
"""


def test_space_parses_values_types_and_directions():
    space = parse_search_space(SPACE)
    assert space.directions == ["maximize", "minimize"]
    assert [str(c) for c in space.constraints] == ["latency_ms <= 5", "accuracy >= 0.8"]
    size = space.params["data.image_size"]
    assert size.is_int and size.grid() == [24, 32, 40]
    assert space.params["model.knobs.alpha"].grid() == [0.25, 0.5]
    dists = space.distributions()
    assert dists["train.learning_rate"].log and dists["train.learning_rate"].low == 1e-4
    assert type(dists["data.image_size"]).__name__ == "IntDistribution"


@pytest.mark.parametrize("text, expected", [
    ('objectives = ["accuracy", "speed"]\n[params]\n"train.epochs" = { choices = [1] }', "objectives[1] must be one of"),
    ('constraints = ["latency_ms < 5"]\n[params]\n"train.epochs" = { choices = [1] }', "constraints[0] must look like"),
    ('constraints = ["speed <= 5"]\n[params]\n"train.epochs" = { choices = [1] }', "constraints[0] names no known metric 'speed'"),
    ('[params]\n"train.learning_rate" = { low = 0.1, high = 0.01 }', "params.'train.learning_rate'.low must be < high"),
    ('[params]\n"train.learning_rate" = { low = 0.0, high = 0.01, log = true }', "params.'train.learning_rate'.log needs low > 0"),
    ('[params]\n"train.learning_rate" = { low = 0.001 }', "params.'train.learning_rate'.low must be given with high"),
    ('[params]\n"train.learning_rate" = { choices = [0.1], low = 0.0 }', "params.'train.learning_rate'.choices cannot be combined"),
    ('[params]\n"train.lr" = { chioces = [1] }', "params.'train.lr'.chioces is not a known field"),
    ('[params]\n"stages[x].final_sparsity" = { choices = [0.5] }', "is not a recipe path"),
    ('[params]', "params is empty"),
    ('budget = 3\n[params]\n"train.epochs" = { choices = [1] }', "budget is not a known section"),
    ('[compound]\nalpha = { low = 0.5, high = 1.2 }\nbeta = { low = 1.0, high = 1.2 }', "compound.alpha values must be >= 1"),
])
def test_bad_spaces_get_one_line_errors_naming_the_field(text, expected):
    with pytest.raises(RecipeError) as err:
        parse_search_space(text, source="space.toml")
    message = str(err.value)
    assert message.startswith("space.toml: ") and expected in message and "\n" not in message


def test_apply_overrides_sets_paths_and_never_mutates_the_base():
    base = {"model": {"name": "mobilenet_v2"}, "stages": [{"type": "train"}, {"type": "prune", "final_sparsity": 0.5}]}
    out = apply_overrides(base, {"model.knobs.alpha": 0.35, "stages[1].final_sparsity": 0.75, "train.learning_rate": 0.01})
    assert out["model"]["knobs"] == {"alpha": 0.35} and out["stages"][1]["final_sparsity"] == 0.75 and out["train"] == {"learning_rate": 0.01}
    assert base == {"model": {"name": "mobilenet_v2"}, "stages": [{"type": "train"}, {"type": "prune", "final_sparsity": 0.5}]}
    with pytest.raises(RecipeError, match=r"stages\[5\]"):
        apply_overrides(base, {"stages[5].final_sparsity": 0.5})


def test_compound_scaling_keeps_the_flops_rule_and_scales_the_base():
    space = parse_search_space('[compound]\nphi = 2.0\nalpha = { low = 1.0, high = 1.4 }\nbeta = { low = 1.0, high = 1.2 }')
    c = space.compound
    base = {"model": {"knobs": {"width": 0.5}}, "data": {"image_size": 32}}
    for alpha, beta in [(1.2, 1.1), (1.0, 1.0), (1.4, 1.15)]:
        gamma = c.gamma(alpha, beta)
        assert alpha * beta**2 * gamma**2 == pytest.approx(2.0)
        out = space.overrides({"compound.alpha": alpha, "compound.beta": beta}, base)
        assert out["model.knobs.depth"] == pytest.approx(alpha**2, abs=1e-4)  # base depth 1, phi 2
        assert out["model.knobs.width"] == pytest.approx(0.5 * beta**2, abs=1e-4)
        assert out["data.image_size"] == round(32 * gamma**2)
    assert space.overrides({"compound.alpha": 1.2, "compound.beta": 1.1}, base)["data.image_size"] == round(32 * 2 / (1.2 * 1.21))
    with pytest.raises(ValueError, match="resolution would shrink"):
        space.overrides({"compound.alpha": 1.4, "compound.beta": 1.3}, base)  # 1.4 * 1.69 > 2


def test_constraint_violation_sign_follows_optuna():
    assert Constraint.parse("latency_ms <= 5", "c").violation(4.0) == -1.0
    assert Constraint.parse("latency_ms <= 5", "c").violation(6.5) == 1.5
    assert Constraint.parse("accuracy >= 0.9", "c").violation(0.95) == pytest.approx(-0.05)


def test_grid_needs_a_step_for_ranges():
    space = parse_search_space('[params]\n"train.learning_rate" = { low = 0.001, high = 0.01 }')
    with pytest.raises(RecipeError, match="a grid needs choices or a step"):
        space.grid()
    two = parse_search_space('[params]\n"a.b" = { choices = [1, 2] }\n"a.c" = { low = 0.0, high = 0.2, step = 0.1 }').grid()
    assert len(two) == 6 and {(p["a.b"], p["a.c"]) for p in two} == {(b, c) for b in (1, 2) for c in (0.0, 0.1, 0.2)}


def test_pareto_front_in_any_number_of_objectives():
    # maximize accuracy, minimize latency
    points = [[0.90, 2.0], [0.85, 1.0], [0.80, 1.5], [0.90, 3.0], [0.95, 5.0]]
    assert pareto_front(points, ["maximize", "minimize"]) == [True, True, False, False, True]
    three = [[0.9, 1.0, 100], [0.9, 1.0, 90], [0.8, 0.5, 200]]
    assert pareto_front(three, ["maximize", "minimize", "minimize"]) == [False, True, True]
    assert pareto_front([[0.5], [0.7], [0.7]], ["maximize"]) == [False, True, True]
