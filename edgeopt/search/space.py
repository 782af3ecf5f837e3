"""Search spaces: which recipe fields a search varies, its objectives and constraints, read from TOML.

A space file names recipe fields by path (``model.knobs.alpha``, ``data.image_size``,
``train.learning_rate``, ``stages[1].final_sparsity``) with their values, the objectives (``accuracy``
is maximized, ``latency_ms``/``size_bytes``/``gzip_bytes``/``macs``/``params`` minimized) and constraints
such as ``"latency_ms <= 5"``. An optional ``[compound]`` table searches EfficientNet-style compound
scaling: depth ``alpha`` and width ``beta`` are sampled, resolution ``gamma`` follows from
``alpha * beta^2 * gamma^2 = target`` (2 in the paper), and ``phi`` scales all three.

    objectives = ["accuracy", "latency_ms"]
    constraints = ["latency_ms <= 5"]
    [params]
    "model.knobs.alpha" = { choices = [0.25, 0.35, 0.5] }
    "train.learning_rate" = { low = 1e-4, high = 1e-2, log = true }

Nothing is evaluated: constraints are parsed by a regular expression, values are TOML data.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from edgeopt.config import RecipeError, from_dict

__all__ = ["CompoundSpec", "Constraint", "ParamSpec", "SearchSpace", "OBJECTIVES", "apply_overrides", "load_search_space", "parse_search_space"]

# objective -> direction; the metrics a trial reports (see edgeopt.search.trial_metrics)
OBJECTIVES = {"accuracy": "maximize", "keras_accuracy": "maximize", "latency_ms": "minimize", "size_bytes": "minimize",
              "gzip_bytes": "minimize", "macs": "minimize", "params": "minimize"}
# metrics known before any training: constraints on them reject a candidate at once (no training spent)
BEFORE_TRAINING = ("macs", "params")


@dataclass(frozen=True)
class ParamSpec:
    """Values of one recipe field: ``choices``, or a range ``low``..``high`` (``step``, or ``log`` scale).
    Integer ``low``/``high``/``step`` give integer values."""

    choices: tuple | None = None
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    log: bool = False

    def __post_init__(self):
        if self.choices is not None:
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("choices cannot be combined with low/high/step/log")
            if not self.choices:
                raise ValueError("choices must list at least one value")
            return
        if self.low is None or self.high is None:
            raise ValueError("low must be given with high (a range), or use choices = [...]")
        if not self.low < self.high:
            raise ValueError(f"low must be < high, got {self.low} and {self.high}")
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError(f"step must be > 0 and cannot be combined with log, got {self.step}")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0, got {self.low}")

    @property
    def is_int(self) -> bool:
        return self.choices is None and all(isinstance(v, int) for v in (self.low, self.high, self.step) if v is not None)

    def distribution(self):
        """The Optuna distribution of these values."""
        import optuna

        if self.choices is not None:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.is_int:
            return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step or 1)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def grid(self) -> list:
        """Every value, for a grid search: the choices, or the range walked by ``step``."""
        if self.choices is not None:
            return list(self.choices)
        if self.step is None:
            raise ValueError("a grid needs choices or a step for every parameter (a continuous range has no grid)")
        n = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        values = [self.low + i * self.step for i in range(n)]
        return values if self.is_int else [round(v, 12) for v in values]


@dataclass(frozen=True)
class CompoundSpec:
    """EfficientNet compound scaling (Tan & Le 2019) of the base recipe's network: depth times ``alpha^phi``,
    width times ``beta^phi``, resolution times ``gamma^phi`` with ``gamma = sqrt(target / (alpha * beta^2))``,
    so alpha * beta^2 * gamma^2 = target (FLOPs grow by about target^phi)."""

    alpha: ParamSpec
    beta: ParamSpec
    phi: float = 1.0
    target: float = 2.0
    depth_path: str = "model.knobs.depth"
    width_path: str = "model.knobs.width"
    resolution_path: str = "data.image_size"
    base_resolution: int | None = None

    def __post_init__(self):
        if self.target <= 1:
            raise ValueError(f"target must be > 1 (the paper's FLOPs budget is 2), got {self.target}")
        for name in ("alpha", "beta"):
            spec = getattr(self, name)
            low = min(spec.choices) if spec.choices is not None else spec.low
            if low < 1:
                raise ValueError(f"{name} values must be >= 1 (scaling up from the base network), got {low}")

    def gamma(self, alpha: float, beta: float) -> float:
        return math.sqrt(self.target / (alpha * beta**2))

    def overrides(self, alpha: float, beta: float, base_doc: dict) -> dict:
        """The recipe fields for (alpha, beta): the base recipe's depth, width and resolution multiplied by
        ``alpha^phi``, ``beta^phi`` and ``gamma^phi`` (a missing depth/width counts as 1)."""
        gamma = self.gamma(alpha, beta)
        if gamma < 1:
            raise ValueError(f"alpha * beta^2 = {alpha * beta**2:.3f} exceeds the target {self.target}: resolution would shrink (gamma {gamma:.3f} < 1)")
        depth, width = _get(base_doc, self.depth_path, 1.0), _get(base_doc, self.width_path, 1.0)
        base = self.base_resolution or _get(base_doc, self.resolution_path, 32)
        return {self.depth_path: round(depth * alpha**self.phi, 4), self.width_path: round(width * beta**self.phi, 4),
                self.resolution_path: int(round(base * gamma**self.phi))}


_CONSTRAINT = re.compile(r"^\s*([a-z_]+)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """``metric <= limit`` or ``metric >= limit``; :meth:`violation` is <= 0 when it holds (Optuna's convention)."""

    metric: str
    op: str
    limit: float

    @classmethod
    def parse(cls, text: str, path: str) -> "Constraint":
        m = _CONSTRAINT.match(text)
        if not m:
            raise RecipeError(f"{path} must look like \"latency_ms <= 5\" (metric, <= or >=, number), got {text!r}")
        metric, op, number = m.groups()
        if metric not in OBJECTIVES:
            raise RecipeError(f"{path} names no known metric {metric!r}; known: {', '.join(OBJECTIVES)}")
        try:
            return cls(metric, op, float(number))
        except ValueError:
            raise RecipeError(f"{path}: {number!r} is not a number") from None

    def violation(self, value: float) -> float:
        return value - self.limit if self.op == "<=" else self.limit - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.limit:g}"


@dataclass(frozen=True)
class SearchSpace:
    params: dict = field(default_factory=dict)  # recipe path -> ParamSpec
    objectives: tuple[str, ...] = ("accuracy", "latency_ms")
    constraints: tuple[Constraint, ...] = ()
    compound: CompoundSpec | None = None
    source: str = "<space>"

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    def distributions(self) -> dict:
        """Optuna parameter name -> distribution (compound coefficients as ``compound.alpha``/``compound.beta``)."""
        out = {path: spec.distribution() for path, spec in self.params.items()}
        if self.compound:
            out["compound.alpha"] = self.compound.alpha.distribution()
            out["compound.beta"] = self.compound.beta.distribution()
        return out

    def grid(self) -> list[dict]:
        """Every combination of the parameters' grid values (a grid search's trials, in a fixed order)."""
        import itertools

        specs = dict(self.params)
        if self.compound:
            specs["compound.alpha"], specs["compound.beta"] = self.compound.alpha, self.compound.beta
        names = list(specs)
        try:
            axes = [specs[n].grid() for n in names]
        except ValueError as err:
            raise RecipeError(f"{self.source}: {err}") from None
        return [dict(zip(names, combo)) for combo in itertools.product(*axes)]

    def overrides(self, params: dict, base_doc: dict) -> dict:
        """Recipe path -> value for one trial's Optuna parameters (compound coefficients expanded)."""
        out = {k: v for k, v in params.items() if not k.startswith("compound.")}
        if self.compound:
            out.update(self.compound.overrides(params["compound.alpha"], params["compound.beta"], base_doc))
        return out


def parse_search_space(text: str, source: str = "<space>") -> SearchSpace:
    """Parse and validate a search-space TOML; errors are :class:`RecipeError` naming file and field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"{source}: not valid TOML: {err}") from None
    try:
        unknown = sorted(set(doc) - {"objectives", "constraints", "params", "compound"})
        if unknown:
            raise RecipeError(f"{unknown[0]} is not a known section; known: compound, constraints, objectives, params")
        objectives = doc.get("objectives", ["accuracy", "latency_ms"])
        if not isinstance(objectives, list) or not objectives:
            raise RecipeError("objectives must be a non-empty list, e.g. [\"accuracy\", \"latency_ms\"]")
        for i, o in enumerate(objectives):
            if o not in OBJECTIVES:
                raise RecipeError(f"objectives[{i}] must be one of {', '.join(OBJECTIVES)}; got {o!r}")
        if len(set(objectives)) != len(objectives):
            raise RecipeError("objectives lists a metric twice")
        constraints = doc.get("constraints", [])
        if not isinstance(constraints, list):
            raise RecipeError("constraints must be a list of strings such as \"latency_ms <= 5\"")
        parsed = tuple(Constraint.parse(c if isinstance(c, str) else repr(c), f"constraints[{i}]") for i, c in enumerate(constraints))
        raw_params = doc.get("params", {})
        if not isinstance(raw_params, dict):
            raise RecipeError("params must be a table of recipe paths, e.g. \"model.knobs.alpha\" = { choices = [0.25, 0.5] }")
        params = {}
        for path, spec in raw_params.items():
            _parse_path(path, f"params.{path!r}")
            params[path] = from_dict(ParamSpec, spec, f"params.{path!r}")
        compound = None
        if "compound" in doc:
            compound = from_dict(CompoundSpec, doc["compound"], "compound")
            for key in ("depth_path", "width_path", "resolution_path"):
                _parse_path(getattr(compound, key), f"compound.{key}")
        if not params and compound is None:
            raise RecipeError("params is empty: a search needs at least one recipe field to vary (or a [compound] table)")
        return SearchSpace(params, tuple(objectives), parsed, compound, source)
    except RecipeError as err:
        raise RecipeError(f"{source}: {err}") from None


def load_search_space(path: str | Path) -> SearchSpace:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"search space file {path} does not exist")
    return parse_search_space(path.read_text(), source=str(path))


# ---- recipe paths -----------------------------------------------------------------------------------

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(\[(\d+)\])?")


def _parse_path(path: str, where: str) -> list:
    """``stages[1].final_sparsity`` -> ["stages", 1, "final_sparsity"]."""
    keys = []
    for part in path.split("."):
        m = _TOKEN.fullmatch(part)
        if not m:
            raise RecipeError(f"{where}: {path!r} is not a recipe path like \"model.knobs.alpha\" or \"stages[1].final_sparsity\"")
        keys.append(m.group(1))
        if m.group(3) is not None:
            keys.append(int(m.group(3)))
    return keys


def _get(doc: dict, path: str, default=None):
    node = doc
    for key in _parse_path(path, path):
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return default
    return node


def apply_overrides(doc: dict, overrides: dict) -> dict:
    """A deep copy of recipe data ``doc`` with each ``path: value`` set; a missing table is created
    (``model.knobs``), a missing list item is an error naming the path."""
    out = copy.deepcopy(doc)
    for path, value in overrides.items():
        keys = _parse_path(path, path)
        node = out
        for depth, key in enumerate(keys[:-1]):
            if isinstance(key, int):
                if not isinstance(node, list) or key >= len(node):
                    raise RecipeError(f"{path}: the recipe has no {'.'.join(map(str, keys[:depth]))}[{key}]")
                node = node[key]
            else:
                if not isinstance(node, dict):
                    raise RecipeError(f"{path}: {key!r} is not inside a table")
                node = node.setdefault(key, [] if isinstance(keys[depth + 1], int) else {})
        last = keys[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise RecipeError(f"{path}: the recipe has no item {last}")
        elif not isinstance(node, dict):
            raise RecipeError(f"{path}: {last!r} is not inside a table")
        node[last] = value
    return out
