"""Training checkpoints and releases.

A checkpoint is a folder ``RUN/checkpoints/step-00001000/`` holding ``generator/``,
``generator_ema/`` and ``discriminator/`` (each written by ``save_pretrained``),
``trainer_state.pt`` (optimizers, schedulers, step, RNG states; read back with
``weights_only=True``) and ``recipe.toml``. It is written into a temporary folder and renamed
into place, so a crash never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

from upsampler.models.generator import GigaGANUpsampler

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_PATTERN.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def write_atomically(final: Path, write) -> Path:
    """Call ``write(tmp_folder)`` then rename the folder to ``final`` (replacing an old one)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        write(tmp)
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prune_checkpoints(run_dir: str | Path, keep: int, *, protect: Sequence[Path] = ()) -> None:
    """Remove all but the ``keep`` newest checkpoints, never those in ``protect``."""
    protected = {Path(path).resolve() for path in protect}
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        if old.resolve() not in protected:
            shutil.rmtree(old)


def load_trainer_state(checkpoint: Path) -> dict:
    return torch.load(checkpoint / "trainer_state.pt", map_location="cpu", weights_only=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder, or the latest checkpoint of a run folder."""
    path = Path(path)
    if (path / "generator_ema").is_dir():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(
            f"no checkpoint in {path} (expected {path}/checkpoints/step-*/generator_ema)"
        )
    return latest


def export_release(source: str | Path, output_dir: str | Path, *, fp16: bool = False) -> Path:
    """Write a slim release: the EMA generator only, as a ``save_pretrained`` folder.

    ``source`` is a run folder (its latest checkpoint is used) or one checkpoint folder. With
    ``fp16`` the weights are stored in half precision (half the size; the Upscaler computes in
    the dtype it is asked for).
    """
    checkpoint = resolve_checkpoint(source)
    model = GigaGANUpsampler.from_pretrained(checkpoint / "generator_ema")
    if fp16:
        model = model.half()
    output_dir = Path(output_dir)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)

    return write_atomically(output_dir, write)
