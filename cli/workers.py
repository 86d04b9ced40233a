"""The processes that share one batch command: one by default, or every rank of a launcher.

``accelerate launch -m upsampler_cli.app upscale IN -o OUT`` (or ``torchrun -m ...``) starts
several copies of a command. Each copy finds the same list of files; output claims
(:mod:`upsampler.io.claims`) make sure that every file is done by exactly one of them. This
module adds what the copies must share beyond the file system: which one is the main process
(it alone draws the progress bar and prints the summary), a counter of finished files for that
bar, and the gathering of every process's results at the end, so that the summary and the exit
code cover the whole job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

# Set by torchrun and by accelerate launch for each process they start.
_WORLD_SIZE_VARIABLES = ("WORLD_SIZE",)


def launched_processes() -> int:
    """How many processes a launcher (accelerate launch, torchrun) started for this command."""
    for name in _WORLD_SIZE_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


@dataclass
class Workers:
    """This process's place among the processes of one command.

    Attributes:
        rank: 0 for the main process.
        world_size: how many processes share the work.
        device: the device this process should use for "auto" (its own GPU under a launcher).
    """

    rank: int = 0
    world_size: int = 1
    device: str = "auto"
    _state: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str = "auto") -> Workers:
        """One process, or the launcher's processes joined in a process group (gloo on the
        CPU, NCCL on GPUs) through accelerate, which reads torchrun's variables too."""
        if launched_processes() <= 1:
            return cls(device=device)
        try:
            from accelerate import PartialState
        except ImportError as error:
            raise ImportError(
                f"{launched_processes()} processes were launched (WORLD_SIZE); sharing one command "
                f"between them needs the package accelerate ({error}): "
                "pip install 'upsampler[train]'"
            ) from error

        state = PartialState(cpu=device == "cpu")
        chosen = str(state.device) if device == "auto" else device
        return cls(
            rank=state.process_index, world_size=state.num_processes, device=chosen, _state=state
        )

    def order(self, count: int) -> list[int]:
        """The order in which this process tries ``count`` jobs: all of them, starting at its
        own share, so that processes rarely contend for one file and a process that finishes
        early goes on to files no one has claimed yet."""
        start = self.rank * count // self.world_size
        return [*range(start, count), *range(start)]

    # -------------------------------------------------------------- shared counter

    def _store(self):
        if self.world_size <= 1:
            return None
        try:  # the rendezvous key-value store every process of the group already reaches
            from torch.distributed import distributed_c10d

            return distributed_c10d._get_default_store()
        except (ImportError, AttributeError, RuntimeError, ValueError):
            return None

    def add_finished(self, count: int = 1) -> None:
        """Count ``count`` more files finished (by any process)."""
        store = self._store()
        if store is not None:
            store.add("upsampler/finished", count)

    def finished(self, own: int) -> int:
        """Files finished by all processes (``own`` when running alone)."""
        store = self._store()
        return own if store is None else int(store.add("upsampler/finished", 0))

    def mark_failed(self, key: str) -> None:
        """Tell the other processes that the file ``key`` failed here (so none retries it)."""
        store = self._store()
        if store is not None:
            store.set(f"upsampler/failed/{key}", "1")

    def failed_elsewhere(self, key: str) -> bool:
        """Whether another process of this job reported ``key`` as failed."""
        store = self._store()
        return store is not None and store.check([f"upsampler/failed/{key}"])

    # -------------------------------------------------------------- end of the job

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value``, in rank order (a collective: all processes must call it)."""
        if self.world_size <= 1:
            return [value]
        from accelerate.utils import gather_object

        return gather_object([value])
