"""Package attributes imported on first use (PEP 562), so that ``import upsampler`` is cheap.

A package's ``__init__`` lists the names it exports and the module that defines each; that
module is imported the first time one of its names is asked for (``from upsampler import
Upscaler``, ``upsampler.Upscaler``, ``from upsampler.data import *``) and the value is stored
in the package, so later look-ups are plain attribute reads. torch and diffusers thus load when
a model or the engine is first used, and ``upsampler --help`` answers without them. The idea of
diffusers' ``_LazyModule`` and scientific-python's ``lazy_loader.attach``, in a few lines.

Each ``__init__`` imports the same names under ``TYPE_CHECKING`` for type checkers and IDEs;
``tests/test_startup.py`` checks that the two lists agree.

A name that is also a module of its package (``upsampler.evaluation.evaluate``) cannot be
exported lazily: importing the module binds its name in the package before ``__getattr__`` is
ever asked. Such a package imports eagerly.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def attach(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package``.

    Args:
        package: the package's ``__name__``.
        exports: module -> the names of it that the package exports, e.g.
            ``{"upsampler.inference.upscaler": ("Upscaler",)}``.

    The package's modules and sub-packages are attributes too (``upsampler.models`` after a
    bare ``import upsampler``), as they were when ``__init__`` imported everything.
    """
    origin = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name in origin:
            value = getattr(importlib.import_module(origin[name]), name)
        elif _is_submodule(package, name):
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(origin))

    return __getattr__, __dir__


def _is_submodule(package: str, name: str) -> bool:
    # Dunders (__wrapped__, __test__, ...) are asked for by inspect, pytest and copy: never
    # modules, and not worth a search of the package folder.
    if not name.isidentifier() or name.startswith("__"):
        return False
    return importlib.util.find_spec(f"{package}.{name}") is not None
