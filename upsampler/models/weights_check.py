"""Naming what is wrong when weights do not fit a model: one wording for every loader.

Left to torch or diffusers, missing tensors are filled with random values (with a log line),
shapes that differ give advice about ``ignore_mismatched_sizes``, and a key that is left out
reads "Cannot copy out of meta tensor". Our loaders compare names and shapes first and say
which tensors, in the words of :func:`tensor_mismatch`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence


def first_few(names: Sequence[str], count: int = 3) -> str:
    """'a, b, c (and 12 more)'."""
    more = f" (and {len(names) - count} more)" if len(names) > count else ""
    return ", ".join(names[:count]) + more


def tensor_mismatch(
    expected: Mapping[str, Sequence[int]],
    found: Mapping[str, Sequence[int]],
    *,
    expected_by: str = "config.json",
    missing_label: str = "missing keys",
    name: Callable[[str], str] = str,
) -> str:
    """'' when ``found`` has exactly the tensors of ``expected`` (name -> shape), else e.g.
    "missing keys a, b, c (and 2 more); unexpected keys x; wrong shapes w [4, 3] (config.json:
    [8, 3])". ``name`` turns a key into the name the user knows (e.g. as in their file)."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(name(key) for key in found.keys() - expected.keys())
    reshaped = sorted(
        f"{name(key)} {list(found[key])} ({expected_by}: {list(expected[key])})"
        for key in expected.keys() & found.keys()
        if tuple(found[key]) != tuple(expected[key])
    )
    return "; ".join(
        f"{label} {first_few(keys)}"
        for label, keys in (
            (missing_label, missing),
            ("unexpected keys", unexpected),
            ("wrong shapes", reshaped),
        )
        if keys
    )
