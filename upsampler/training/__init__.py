"""Training: recipes, the Trainer, checkpoints and export.

from upsampler.training import Trainer, load_recipe

Trainer(load_recipe("recipes/nano-4x.toml", ["data.path=photos"])).train()

Its names are imported on first use (see ``upsampler._lazy``): reading a recipe needs no torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upsampler._lazy import attach

if TYPE_CHECKING:
    from upsampler.training.checkpoints import (
        RunFolderError,
        export_release,
        latest_checkpoint,
        list_checkpoints,
    )
    from upsampler.training.recipe import Recipe, RecipeError, load_recipe, recipe_from_dict
    from upsampler.training.trainer import OutputWriteError, Trainer, TrainingDivergedError

__getattr__, __dir__ = attach(
    __name__,
    {
        "upsampler.training.checkpoints": (
            "RunFolderError",
            "export_release",
            "latest_checkpoint",
            "list_checkpoints",
        ),
        "upsampler.training.recipe": ("Recipe", "RecipeError", "load_recipe", "recipe_from_dict"),
        "upsampler.training.trainer": ("OutputWriteError", "Trainer", "TrainingDivergedError"),
    },
)

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
