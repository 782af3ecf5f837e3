"""Recipes run end to end: the recipe schema, the stage contract and registry, the runner, the stages.

- ``recipe``: TOML -> validated frozen dataclasses (``load_recipe``).
- ``stage``: the stage registry (``STAGES``, ``@stage``), ``RunContext`` (what a stage gets) and
  ``StageResult`` (what it leaves). ``stages/``: one module per stage type, registered on import.
- ``runner``: ``run_recipe`` runs the stages in order into ``runs/<recipe>/``, resumably; ``recipe_splits`` loads a recipe's data as its run does.
"""
from edgeopt.pipeline.recipe import Recipe, RecipeError, load_recipe, parse_recipe, recipe_from_dict
from edgeopt.pipeline.runner import copy_artifacts, make_strategy, recipe_splits, run_recipe
from edgeopt.pipeline.stage import STAGES, RunContext, StageOutcome, StageResult, load_stage_model, stage

__all__ = ["STAGES", "Recipe", "RecipeError", "RunContext", "StageOutcome", "StageResult", "copy_artifacts", "load_recipe", "load_stage_model",
           "make_strategy", "parse_recipe", "recipe_from_dict", "recipe_splits", "run_recipe", "stage"]
