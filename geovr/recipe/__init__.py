"""Recipes: TOML files composing registered components (see docs/recipes.md)."""

from geovr.recipe.build import build
from geovr.recipe.schema import ComponentChoice, Recipe
from geovr.recipe.validate import load_recipe, validate

__all__ = ["build", "load_recipe", "validate", "Recipe", "ComponentChoice"]
