"""Claiming output files, so that workers sharing one output folder never make the same file twice.

Several processes may fill one output folder at once: two ``upsampler upscale`` runs started by
hand, the ranks of ``accelerate launch`` / ``torchrun``, or machines sharing a network folder.
Before making ``photo.png`` a worker claims it: it creates the hidden file ``.photo.png.claim``
beside it and takes an exclusive, non-blocking ``flock`` on it. The kernel drops the lock when
its process ends, however it ends (``kill -9`` included), so a crashed worker's files are free
for the next run to claim, and nothing ever has to guess whether a claim is stale. The claim
file is removed once the output is written (or the work given up).

Linux emulates ``flock`` with POSIX record locks on NFS, so claims also hold between machines
on a network file system whose lock daemon works; on Windows (no ``fcntl``) every claim
succeeds, which is right for one process and leaves concurrent runs doing work twice.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterable
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

CLAIM_SUFFIX = ".claim"
# Temporary files of write_image and every other atomic writer: ``.NAME.<random>.part`` (see
# upsampler.io.files.atomic_output).
_PART = re.compile(r"^\.(?P<name>.+)\.[^.]+\.part$")


def claim_path(target: str | os.PathLike) -> Path:
    """The claim file of ``target``: ``.NAME.claim`` in the same folder."""
    target = Path(target)
    return target.with_name(f".{target.name}{CLAIM_SUFFIX}")


class Claim:
    """An exclusive claim on one output path, held until :meth:`release` (or process exit)."""

    def __init__(self, target: Path, descriptor: int):
        self.target = target
        self._descriptor: int | None = descriptor

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def release(self) -> None:
        """Remove the claim file and drop the lock (idempotent)."""
        if self._descriptor is None:
            return
        # Unlink before unlocking: a worker that opens the path afterwards makes a new file,
        # and a worker that opened the old one earlier finds the output written once it gets
        # the lock (try_claim's callers check for the output after claiming).
        with contextlib.suppress(OSError):
            claim_path(self.target).unlink()
        os.close(self._descriptor)
        self._descriptor = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def try_claim(target: str | os.PathLike) -> Claim | None:
    """Claim ``target`` for this process; None when a live process holds it already.

    The folder of ``target`` is created if needed. Raises OSError when the claim file cannot
    be created (a read-only or full output folder): the output could not be written either.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(claim_path(target), os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        return Claim(target, descriptor)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    except OSError:
        os.close(descriptor)
        raise
    with contextlib.suppress(OSError):  # who holds it, for a person looking at the folder
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{socket.gethostname()} {os.getpid()}\n".encode())
    return Claim(target, descriptor)


def leftover_parts(folders: Iterable[str | os.PathLike]) -> dict[Path, list[Path]]:
    """Temporary ``.NAME.*.part`` files in ``folders`` (not recursive), by the output they were for.

    A process killed while writing leaves one behind. Remove them only while holding the
    output's claim: a live worker may still be writing its own.
    """
    found: dict[Path, list[Path]] = {}
    for folder in {Path(f) for f in folders}:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _PART.match(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                found.setdefault(folder / match["name"], []).append(Path(entry.path))
    return found


def remove_parts(parts: Iterable[Path]) -> int:
    """Delete the given temporary files; returns how many were removed."""
    removed = 0
    for part in parts:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
            removed += 1
    return removed
