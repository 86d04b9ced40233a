"""Training: recipes, the Trainer, checkpoints and export."""
