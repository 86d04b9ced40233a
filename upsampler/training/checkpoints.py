"""Run folders, training checkpoints and releases.

A run folder ``RUN/`` holds ``run.json`` (the run's id, written when it starts), ``recipe.toml``,
``metrics.jsonl`` (every record carries the run id), ``samples/`` and ``checkpoints/``. One
folder holds one run: a fresh run refuses a folder that is not empty, so a new run can never
mix its checkpoints with an older run's (and ``export`` then pick the older run's weights).

A checkpoint is a folder ``RUN/checkpoints/step-00001000/`` holding ``generator/``,
``generator_ema/`` and ``discriminator/`` (each written by ``save_pretrained``),
``trainer_state.pt`` (optimizers, schedulers, step, RNG states, run id; read back with
``weights_only=True``) and ``recipe.toml``. It is written into a temporary folder and renamed
into place, so a crash, a full disk or Ctrl-C never leaves a half-written checkpoint behind, and
older checkpoints are pruned only once the new one is complete.

Releases and checkpoints are written with ordinary file modes (``0o666 & ~umask`` for files,
``0o777 & ~umask`` for folders), not the 0600 that safetensors gives its files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import torch

from upsampler.io.files import (
    atomic_output,
    check_output_folder,
    set_file_modes,
    short_list,
    write_model_folder,
)

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)$")
RUN_FILE = "run.json"


class RunFolderError(FileExistsError):
    """A fresh run pointed at a folder that already holds a run (or its files disagree)."""


# ---------------------------------------------------------------------- run folders


def new_run_id() -> str:
    """A run id that sorts by start time: ``20250101-120000-3f9a1c``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def read_run_id(run_dir: str | Path) -> str | None:
    """The id in ``RUN/run.json``, or None for a folder without one (or runs older than it)."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text())["run_id"])
    except (ValueError, KeyError, TypeError) as error:
        raise RunFolderError(f"{path} is not a run file of ours ({error}); move it away") from error


def write_run_file(run_dir: str | Path, run_id: str) -> Path:
    """Record ``run_id`` in ``RUN/run.json`` (kept as it is when it already names this run)."""
    path = Path(run_dir) / RUN_FILE
    if read_run_id(run_dir) == run_id:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_id, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    _write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def check_run_folder(run_dir: str | Path, *, resume: bool) -> None:
    """Refuse to start a fresh run in a folder that is not empty, or to resume a folder that
    holds no run.

    Raises:
        RunFolderError: a fresh run (``resume`` off) and ``run_dir`` holds files.
        FileNotFoundError: ``resume`` on a folder with neither a checkpoint nor a run.json.
    """
    run_dir = Path(run_dir)
    if resume:
        if latest_checkpoint(run_dir) is None and read_run_id(run_dir) is None:
            raise FileNotFoundError(
                f"--resume: no run in {run_dir} (no checkpoints/step-* and no {RUN_FILE}); "
                "start a fresh run there without --resume"
            )
        return
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"the run folder {run_dir} exists and is not a folder")
    entries = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
    if entries:
        latest = latest_checkpoint(run_dir)
        held = f"its checkpoints up to {latest.name}" if latest else short_list(entries)
        raise RunFolderError(
            f"the run folder {run_dir} is not empty (it holds {held}): continue that run with "
            "--resume, or train into a new folder with -o NEW_FOLDER (train.output_dir)"
        )


# ---------------------------------------------------------------------- checkpoints


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def checkpoint_step(checkpoint: Path) -> int:
    return int(CHECKPOINT_PATTERN.match(checkpoint.name).group(1))


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_PATTERN.match(p.name)]
    return sorted(found, key=checkpoint_step)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def write_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_folder)`` then rename the folder to ``final`` (replacing an old one).

    On any failure (a full disk, Ctrl-C) the temporary folder is removed and an older ``final``
    is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        write(tmp)
        set_file_modes(tmp)
        if final.exists():
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        if old.exists() and not final.exists():  # stopped between the two renames
            os.replace(old, final)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def prune_checkpoints(run_dir: str | Path, keep: int, *, protect: list[Path] = ()) -> None:
    """Remove all but the ``keep`` newest checkpoints, never those in ``protect``.

    Each is renamed to a hidden name before it is deleted, so one interrupted half-way is never
    taken for a complete checkpoint; leftovers of earlier interruptions are removed here too.
    """
    protected = {Path(path).resolve() for path in protect}
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        if old.resolve() not in protected:
            doomed = old.with_name(f".{old.name}.deleting")
            os.replace(old, doomed)
            shutil.rmtree(doomed)
    folder = Path(run_dir) / "checkpoints"
    for leftover in folder.glob(".step-*") if folder.is_dir() else ():
        shutil.rmtree(leftover, ignore_errors=True)


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


# ---------------------------------------------------------------------- model folders


def export_release(
    source: str | Path, output_dir: str | Path, *, fp16: bool = False, overwrite: bool = False
) -> Path:
    """Write a slim release: the EMA generator only, as a ``save_pretrained`` folder.

    ``source`` is a run folder (its latest checkpoint is used) or one checkpoint folder. With
    ``fp16`` the weights are stored in half precision (half the size; the Upscaler computes in
    the dtype it is asked for).

    ``output_dir`` must be new or empty, unless ``overwrite``: then its ``config.json`` and
    safetensors are replaced and its other files kept. It may never be, be inside or contain the
    run or checkpoint folder.

    Raises:
        FileNotFoundError: no checkpoint in ``source``.
        FileExistsError: ``output_dir`` is not empty and ``overwrite`` is off.
        ValueError: ``output_dir`` overlaps the source, or is a file.
    """
    from diffusers.configuration_utils import FrozenDict

    from upsampler.models.generator import GigaGANUpsampler

    checkpoint = resolve_checkpoint(source)
    sources = {"the checkpoint": checkpoint}
    if checkpoint.parent.name == "checkpoints":  # inside a run: keep the whole run safe
        sources = {"the run folder": checkpoint.parent.parent, **sources}
    output = check_output_folder(output_dir, sources=sources, overwrite=overwrite)
    model = GigaGANUpsampler.from_pretrained(checkpoint / "generator_ema")
    # from_pretrained records where it read the model from: no path of this machine in a release.
    model._internal_dict = FrozenDict(
        {key: value for key, value in model.config.items() if key != "_name_or_path"}
    )
    if fp16:
        model = model.half()
    return write_model_folder(output, model.save_pretrained)


# ---------------------------------------------------------------------- files


def _write_text(path: Path, text: str) -> None:
    """Write a small text file atomically (:func:`upsampler.io.files.atomic_output`)."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
