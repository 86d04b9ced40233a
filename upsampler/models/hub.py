"""Hugging Face Hub ids: a model repository, or one checkpoint file inside a repository.

    owner/repo                              a save_pretrained folder (ours) or an AuraSR repo
    owner/repo/4x-Model.safetensors         one community checkpoint (spandrel), any depth:
    owner/repo/models/4x-Model.pth          the last part ends in a checkpoint suffix

Downloads go through ``huggingface_hub`` exactly as diffusers' do, so its settings apply
unchanged: the token (``HF_TOKEN`` or ``huggingface-cli login``), proxies, ``HF_HOME`` /
``HF_HUB_CACHE``, ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE``. A repository already in the cache
loads with ``HF_HUB_OFFLINE=1`` and no network; when the Hub cannot be reached, the cached copy
is used. Only config, safetensors and card files of a repository are fetched: pickled weights
in the same repository are never downloaded.
"""

from __future__ import annotations

import re
from pathlib import Path

from upsampler.models.registry import ModelUnavailableError
from upsampler.models.spandrel_model import CHECKPOINT_SUFFIXES

_PART = r"[A-Za-z0-9][\w.-]*"
_REPO_ID = re.compile(rf"^(?P<repo>{_PART}/{_PART})(?:/(?P<file>(?:{_PART}/)*{_PART}))?$")
# What a model repository needs: our layout and AuraSR's are config.json + safetensors.
REPO_PATTERNS = ["*.json", "*.safetensors", "*.md"]


def parse_hub_id(name: str) -> tuple[str, str | None] | None:
    """(repo id, file in the repo or None) for a Hub id, None for anything else.

    A third part must name a checkpoint file (``.safetensors``, ``.pth``, ...).
    """
    match = _REPO_ID.match(name)
    if match is None or ".." in name:
        return None
    filename = match["file"]
    if filename is not None and not filename.lower().endswith(CHECKPOINT_SUFFIXES):
        return None
    return match["repo"], filename


def download(name: str, *, revision: str | None = None) -> Path:
    """The local path of Hub id ``name``: a snapshot folder, or one file; from the cache when
    it is there and the Hub is offline or unreachable.

    Raises:
        ModelUnavailableError: not a Hub id, not cached while offline, no such repository,
            revision or file, a gated repository without access; the message says what to do.
    """
    parsed = parse_hub_id(name)
    if parsed is None:
        raise ModelUnavailableError(
            f"{name!r} is not a Hub id (owner/repo, or owner/repo/FILE.safetensors)"
        )
    repo_id, filename = parsed
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub import errors as hub_errors

    at = f" at revision {revision!r}" if revision else ""
    fetch = (
        f"hf download {repo_id}"
        + (f" {filename}" if filename else "")
        + (f" --revision {revision}" if revision else "")
    )
    try:
        if filename is None:
            return Path(
                huggingface_hub.snapshot_download(
                    repo_id, revision=revision, allow_patterns=REPO_PATTERNS
                )
            )
        return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision))
    except hub_errors.GatedRepoError as error:
        raise ModelUnavailableError(
            f"{repo_id} is gated: accept its terms on the Hub and log in (`hf auth login` or "
            "HF_TOKEN) to download it"
        ) from error
    except hub_errors.RepositoryNotFoundError as error:
        raise ModelUnavailableError(
            f"no Hub repository {repo_id!r} (or it is private: log in with `hf auth login` or "
            "set HF_TOKEN)"
        ) from error
    except hub_errors.RevisionNotFoundError as error:
        raise ModelUnavailableError(f"{repo_id} has no revision {revision!r}") from error
    except hub_errors.EntryNotFoundError as error:  # also LocalEntryNotFoundError: check first
        if isinstance(error, hub_errors.LocalEntryNotFoundError):
            raise _not_cached(name, at, fetch, constants) from error
        raise ModelUnavailableError(f"{repo_id}{at} has no file {filename!r}") from error
    except (hub_errors.LocalEntryNotFoundError, hub_errors.IncompleteSnapshotError) as error:
        raise _not_cached(name, at, fetch, constants) from error
    except (hub_errors.HfHubHTTPError, OSError, ValueError) as error:
        raise ModelUnavailableError(
            f"could not download {name!r}{at} from the Hub ({error}); download it with "
            f"`{fetch}` on a machine that is online, or pass a local folder or file"
        ) from error


def _not_cached(name: str, at: str, fetch: str, constants) -> ModelUnavailableError:
    why = (
        "the Hub is offline (HF_HUB_OFFLINE is set)"
        if constants.HF_HUB_OFFLINE
        else "the Hub could not be reached"
    )
    return ModelUnavailableError(
        f"{name!r}{at} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and {why}; "
        f"download it with `{fetch}` on a machine that is online (into the same cache, "
        "HF_HOME / HF_HUB_CACHE), or pass a local folder or file instead"
    )
