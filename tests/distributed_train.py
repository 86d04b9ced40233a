"""Run by test_training under torch.distributed.run: train, then each rank saves its weights."""

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from upsampler.training.recipe import recipe_from_dict
from upsampler.training.trainer import Trainer

recipe = recipe_from_dict(json.loads(Path(sys.argv[1]).read_text()))
output = Path(sys.argv[2])
trainer = Trainer(recipe)
trainer.train()
tensors = {f"generator.{k}": v.contiguous() for k, v in trainer.generator.state_dict().items()}
tensors.update(
    {f"discriminator.{k}": v.contiguous() for k, v in trainer.discriminator.state_dict().items()}
)
save_file(tensors, output / f"rank{trainer.rank}.safetensors")
if trainer.rank == 0:
    (output / "world.json").write_text(json.dumps({"world_size": trainer.world_size}))
torch.distributed.barrier()
