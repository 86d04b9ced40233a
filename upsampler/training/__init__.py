"""Training: recipes, the Trainer, checkpoints and export.

from upsampler.training import Trainer, load_recipe

Trainer(load_recipe("recipes/nano-4x.toml", ["data.path=photos"])).train()
"""

from upsampler.training.checkpoints import export_release, latest_checkpoint, list_checkpoints
from upsampler.training.recipe import Recipe, RecipeError, load_recipe, recipe_from_dict
from upsampler.training.trainer import Trainer, TrainingDivergedError

__all__ = [
    "Recipe",
    "RecipeError",
    "Trainer",
    "TrainingDivergedError",
    "export_release",
    "latest_checkpoint",
    "list_checkpoints",
    "load_recipe",
    "recipe_from_dict",
]
