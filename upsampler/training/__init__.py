"""Training: recipes, the Trainer, checkpoints and export.

from upsampler.training import Trainer, load_recipe

Trainer(load_recipe("recipes/nano-4x.toml", ["data.path=photos"])).train()
"""

from upsampler.training.checkpoints import (
    RunFolderError,
    export_release,
    latest_checkpoint,
    list_checkpoints,
)
from upsampler.training.recipe import Recipe, RecipeError, load_recipe, recipe_from_dict
from upsampler.training.trainer import OutputWriteError, Trainer, TrainingDivergedError

__all__ = [
    "OutputWriteError",
    "Recipe",
    "RecipeError",
    "RunFolderError",
    "Trainer",
    "TrainingDivergedError",
    "export_release",
    "latest_checkpoint",
    "list_checkpoints",
    "load_recipe",
    "recipe_from_dict",
]
