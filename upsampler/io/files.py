"""Writing model folders without destroying anything, with ordinary file modes.

Every command that writes a model folder (``upsampler export``, ``upsampler convert aurasr``)
follows one rule, :func:`check_output_folder`: a destination that is not empty is refused
unless asked to overwrite, and even then only the files written are replaced; a destination
that is, lies inside, or contains what is being read is always refused.
:func:`write_model_folder` then writes into a hidden folder inside the destination and moves
the files into place, ``config.json`` last, so a reader never sees a model without its weights.

safetensors writes its files 0600; :func:`set_file_modes` gives them what ``open`` would
(``0o666 & ~umask``), as :func:`upsampler.io.images.atomic_output` does for images.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path


def check_output_folder(
    output: str | Path, *, sources: Mapping[str, str | Path] | None = None, overwrite: bool = False
) -> Path:
    """Refuse a model folder destination that would destroy something.

    Args:
        output: the folder to write.
        sources: what is read to write it, by what messages call it (``{"the run folder": run}``):
            ``output`` may be none of them, nor inside one, nor contain one, even with
            ``overwrite``.
        overwrite: allow a folder that is not empty (only the files written are replaced).

    Raises:
        ValueError: ``output`` is, is inside or contains a source, or is a file.
        FileExistsError: ``output`` is a folder that is not empty and ``overwrite`` is off.
    """
    output = Path(output).expanduser()
    target = output.resolve()
    resolved = [(label, Path(p).expanduser().resolve()) for label, p in (sources or {}).items()]
    # Equal first, then inside, then containing: the message names the closest relation.
    for label, source in resolved:
        if target == source:
            raise ValueError(f"output {output} is {label} itself; choose another folder")
    for label, source in resolved:
        if source in target.parents:
            raise ValueError(
                f"output {output} is inside {label} {source}; choose a folder outside it"
            )
    for label, source in resolved:
        if target in source.parents:
            raise ValueError(f"output {output} contains {label} {source}; choose another folder")
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} exists and is not a folder")
    entries = sorted(p.name for p in output.iterdir()) if output.is_dir() else []
    if entries and not overwrite:
        raise FileExistsError(
            f"{output} already holds {short_list(entries)}; write to a new or empty folder, or pass "
            "--overwrite to replace the model files there (config.json, *.safetensors; "
            "other files are kept)"
        )
    return output


def write_model_folder(output: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(staging)`` for a hidden folder inside ``output``, then move each file it
    wrote into ``output``, ``config.json`` last.

    Files of ``output`` with the same names are replaced; nothing else there is touched, and
    nothing is written outside ``output``. Check the destination first with
    :func:`check_output_folder`.
    """
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f".write-{uuid.uuid4().hex[:8]}.part"
    try:
        staging.mkdir()
        write(staging)
        set_file_modes(staging)
        written = sorted(staging.iterdir(), key=lambda p: (p.name == "config.json", p.name))
        if folders := [p.name for p in written if p.is_dir()]:
            raise ValueError(f"a model folder of files only was expected, got folders {folders}")
        for file in written:
            os.replace(file, output / file.name)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not any(output.iterdir()):
            output.rmdir()
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return output


def umask() -> int:
    """The process's umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def set_file_modes(folder: Path) -> None:
    """Give ``folder`` and everything in it the modes a plain ``open``/``mkdir`` would:
    ``0o666 & ~umask`` for files, ``0o777 & ~umask`` for folders (safetensors writes 0600)."""
    mask = umask()
    os.chmod(folder, 0o777 & ~mask)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def short_list(entries: list[str], shown: int = 4) -> str:
    """'a, b, c, d and 3 more'."""
    more = f" and {len(entries) - shown} more" if len(entries) > shown else ""
    return ", ".join(entries[:shown]) + more
