"""Reading and writing PeakNet weights: ``torch.save(state_dict)`` files and safetensors.

Loading is strict: every key of the model must be in the file with the same shape, and nothing
else may be. A missing file is an error, never a silently random model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from peaknet_serve.errors import CheckpointError

logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIX = ".safetensors"
_WRAPPER_KEYS = ("model_state_dict", "state_dict")
_MAX_LISTED = 10


def checkpoint_filter_fn(state_dict: Mapping[str, object]) -> dict[str, object]:
    """Unwrap a training checkpoint into a bare state_dict; the only place keys may change.

    Accepts ``{"model_state_dict": sd, ...}`` or ``{"state_dict": sd, ...}`` (what training loops
    save next to the optimiser state) as well as a bare state_dict. Keys are not renamed.
    """
    for key in _WRAPPER_KEYS:
        inner = state_dict.get(key)
        if isinstance(inner, Mapping):
            logger.info("checkpoint wraps its weights under %r; using that entry", key)
            return dict(inner)
    return dict(state_dict)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from ``.safetensors`` or a ``torch.save`` file (``.pt``, ``.bin``...).

    Tensors are loaded on the CPU; ``torch.load`` runs with ``weights_only=True``.

    Raises:
        CheckpointError: the file is missing, unreadable, or holds something else than tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"weights file {str(path)!r} does not exist; give the path of a PeakNet checkpoint "
            "(.pt/.bin from torch.save(model.state_dict()), or .safetensors)"
        )
    try:
        if path.suffix == SAFETENSORS_SUFFIX:
            raw: object = load_file(path, device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise CheckpointError(f"cannot read weights file {str(path)!r}: {exc}") from exc
    if not isinstance(raw, Mapping):
        raise CheckpointError(
            f"weights file {str(path)!r} holds a {type(raw).__name__}, not a state_dict; "
            "save it with torch.save(model.state_dict(), path)"
        )
    state_dict = checkpoint_filter_fn(raw)
    not_tensors = sorted(k for k, v in state_dict.items() if not isinstance(v, torch.Tensor))
    if not_tensors:
        raise CheckpointError(
            f"weights file {str(path)!r} has entries that are not tensors: {_listing(not_tensors)}"
        )
    return state_dict  # type: ignore[return-value]


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return f"{shown} (and {more} more)" if more > 0 else shown


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise ``CheckpointError`` unless ``state_dict`` has exactly the model's keys and shapes."""
    expected = model.state_dict()
    missing = sorted(expected.keys() - state_dict.keys())
    unexpected = sorted(state_dict.keys() - expected.keys())
    mismatched = sorted(
        f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_listing(mismatched)}")
    if problems:
        raise CheckpointError(
            "the weights do not fit the model; "
            + "; ".join(problems)
            + ". Check that the model preset matches the checkpoint."
        )


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load the weights file at ``path`` into ``model`` strictly (in place, on its device).

    Raises:
        CheckpointError: missing/unreadable file, or keys or shapes that differ from the model's.
    """
    state_dict = load_state_dict_file(path)
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    logger.info("loaded %d tensors from %s", len(state_dict), path)


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Write the model's state_dict: safetensors for ``.safetensors``, else ``torch.save``."""
    path = Path(path)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == SAFETENSORS_SUFFIX:
        save_file(state_dict, path)
    else:
        torch.save(state_dict, path)
    logger.info("saved %d tensors to %s", len(state_dict), path)
