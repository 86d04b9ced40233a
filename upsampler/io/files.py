"""Finding image files, and writing files and folders without ever leaving half of one.

Finding: :func:`find_images` is how every command and the data loader turn files and folders
into a list of images: one suffix list (:data:`~upsampler.io.formats.IMAGE_SUFFIXES`), hidden
files and folders skipped, symbolic links to folders not descended into, sorted.

Writing, with one policy for every writer:

* a file goes to a hidden temporary file beside it, is flushed to disk and renamed over the
  target (:func:`atomic_output`): an interrupted run leaves the old file or the complete new
  one, never a truncated one, and nothing behind;
* a model folder is written into a hidden folder inside the destination and its files moved
  into place, ``config.json`` last, so a reader never sees a model without its weights
  (:func:`write_model_folder`); a destination that is not empty is refused unless asked to
  overwrite, and even then only the files written are replaced; a destination that is, lies
  inside, or contains what is being read is always refused (:func:`check_output_folder`);
* files get the mode a plain ``open`` would give them, ``0o666 & ~umask`` (0644 under the
  usual umask 022), and folders ``0o777 & ~umask`` (:func:`set_file_modes`): ``mkstemp`` and
  safetensors make private 0600 files, which a shared output or model folder must not hold.

Nothing here imports NumPy, Pillow or torch, so the command line can use it before any of them
is loaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from upsampler.io.formats import IMAGE_SUFFIXES

T = TypeVar("T")

# --------------------------------------------------------------------------- finding images


def find_images(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    recursive: bool,
    exclude: str | os.PathLike | None = None,
) -> list[Path]:
    """The image files of ``paths``, in order: each file as given, each folder's images sorted.

    A folder gives its files whose suffix is in ``IMAGE_SUFFIXES`` (in any case: ``.JPG`` too),
    and with ``recursive`` those of its subfolders, sorted by path (folder by folder, as
    ``sorted`` orders ``Path`` objects). Inside a folder, names that start with a dot (hidden
    files and folders: ``.thumbnails/``, macOS ``._photo.jpg``) are skipped, symbolic links to
    files are taken and symbolic links to folders are not descended into (as
    ``Path.rglob``). A path that is not a folder is returned as given, whatever its suffix and
    even if missing, so that reading it says what is wrong with it. A file reached twice (given
    twice, or given and inside a folder given) is returned once, where it first comes.

    Args:
        paths: files and folders (one, or several).
        recursive: descend into subfolders.
        exclude: a folder whose files are never returned (an output folder inside an input
            folder, so earlier outputs are not read back as inputs); compared resolved.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: list[Path] = []
    for item in map(Path, paths):
        if not item.is_dir():
            found.append(item)
            continue
        found += [
            path
            for path in list_files(item, recursive=recursive, exclude=exclude)
            if path.suffix.lower() in IMAGE_SUFFIXES
        ]
    return first_of_each_file(found)


def first_of_each_file(
    items: Iterable[T], path: Callable[[T], str | os.PathLike] = lambda item: item
) -> list[T]:
    """``items`` without those whose ``path`` names a file an earlier one named: paths compare
    as absolute paths (``a/../a/b.png`` is ``a/b.png``), so links keep their own names."""
    seen: set[str] = set()
    unique = []
    for item in items:
        if (key := os.path.abspath(path(item))) not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def list_files(
    folder: str | os.PathLike, *, recursive: bool, exclude: str | os.PathLike | None = None
) -> list[Path]:
    """Every file of ``folder`` (and its subfolders with ``recursive``), sorted by path, as
    :func:`find_images` walks it: hidden names skipped, links to folders not descended into,
    links to files taken, nothing inside ``exclude``."""
    skipped = Path(exclude).resolve() if exclude is not None else None
    files: list[Path] = []
    for root, folders, names in os.walk(folder):
        # Pruned in place: os.walk then does not descend into them. Links to folders are
        # listed among ``folders`` and never followed (followlinks is off).
        folders[:] = [name for name in folders if not name.startswith(".")]
        if not recursive:
            folders.clear()
        files += [Path(root, name) for name in names if not name.startswith(".")]
    return sorted(
        path
        for path in files
        if path.is_file() and (skipped is None or not _inside(path.resolve(), skipped))
    )


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# --------------------------------------------------------------------------- writing files


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    Write the file at the yielded path (any writer that takes a path). When the block ends it
    is flushed to disk, given mode ``0o666 & ~umask`` and renamed over ``path``. On any
    exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is left
    untouched. The temporary file is ``.NAME.<random>.part`` in the same folder (the folder is
    created if needed): hidden, and not an image suffix, so a scan never takes one left by a
    killed process for an image (:mod:`upsampler.io.claims` finds and removes those).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~umask())  # mkstemp makes 0600 files
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


# --------------------------------------------------------------------------- writing folders


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
