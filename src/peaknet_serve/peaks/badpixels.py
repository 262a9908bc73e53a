"""Bad-pixel masks: read once from an HDF5 or NumPy file, fitted to the frames' shape."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
from scipy import ndimage

from peaknet_serve.errors import ConfigError

logger = logging.getLogger(__name__)

_HDF5_SUFFIXES = {".h5", ".hdf5", ".hdf", ".cxi"}
_DEFAULT_HDF5_KEY = "/data/data"


def load_bad_pixel_mask(
    path: str | Path,
    *,
    key: str | None = None,
    convention: Literal["nonzero_good", "nonzero_bad"] = "nonzero_good",
) -> np.ndarray:
    """Read a mask file and return a boolean array that is True at bad pixels.

    Args:
        path: an HDF5 file (.h5, .hdf5, .hdf, .cxi), a .npy or a .npz file.
        key: HDF5 dataset path (default ``/data/data``) or .npz array name (default: the only
            array in the file).
        convention: ``nonzero_good`` (Cheetah, OM: 1 good, 0 bad) or ``nonzero_bad``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"peaks.bad_pixel_mask: no file {str(path)!r}; fix the path or set null")
    suffix = path.suffix.lower()
    try:
        if suffix in _HDF5_SUFFIXES:
            raw = _read_hdf5(path, key or _DEFAULT_HDF5_KEY)
        elif suffix == ".npy":
            raw = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            raw = _read_npz(path, key)
        else:
            raise ConfigError(
                f"peaks.bad_pixel_mask: {str(path)!r} is neither HDF5 (.h5, .hdf5, .cxi) nor "
                "NumPy (.npy, .npz)"
            )
    except (OSError, ValueError) as exc:
        raise ConfigError(f"peaks.bad_pixel_mask: cannot read {str(path)!r}: {exc}") from exc
    if raw.ndim not in (2, 3):
        raise ConfigError(
            f"peaks.bad_pixel_mask: {str(path)!r} holds shape {raw.shape}; expected (H, W) or "
            "(P, H, W)"
        )
    bad = raw == 0 if convention == "nonzero_good" else raw != 0
    logger.info("bad-pixel mask %s: %d of %d pixels bad", path, int(bad.sum()), bad.size)
    return bad


def check_bad_pixel_mask(
    path: str | Path,
    frame_shapes: list[tuple[int, ...]],
    *,
    key: str | None = None,
    convention: Literal["nonzero_good", "nonzero_bad"] = "nonzero_good",
) -> None:
    """Read the mask file and fit it to each of ``frame_shapes``, at config load.

    Raises:
        ConfigError: the file is missing or unreadable, or the mask fits one of the shapes not.
    """
    bad = load_bad_pixel_mask(path, key=key, convention=convention)
    for shape in frame_shapes:
        fit_bad_pixels(bad, tuple(shape), margin=0)


def fit_bad_pixels(bad: np.ndarray, frame_shape: tuple[int, ...], *, margin: int) -> np.ndarray:
    """The bad-pixel mask in the frames' shape, grown by ``margin`` pixels within each panel.

    A 2-D (P*H, W) slab mask fits a (P, H, W) stack (Cheetah's slab layout).
    """
    if bad.shape != frame_shape:
        if bad.size == int(np.prod(frame_shape)) and bad.ndim == 2 and len(frame_shape) == 3:
            bad = bad.reshape(frame_shape)
        else:
            raise ConfigError(
                f"peaks.bad_pixel_mask has shape {bad.shape} but the frames are {frame_shape}; "
                "give a mask of the frame's shape (or the (P*H, W) slab of a panel stack)"
            )
    if margin > 0 and bad.any():
        structure = np.ones((3,) * bad.ndim, dtype=bool)
        if bad.ndim == 3:
            structure[0] = structure[2] = False
        bad = ndimage.binary_dilation(bad, structure=structure, iterations=margin)
    bad = np.ascontiguousarray(bad, dtype=bool)
    bad.flags.writeable = False
    return bad


def _read_hdf5(path: Path, key: str) -> np.ndarray:
    with h5py.File(path, "r") as handle:
        if key not in handle or not isinstance(handle[key], h5py.Dataset):
            raise ConfigError(
                f"peaks.bad_pixel_mask: {str(path)!r} has no dataset {key!r}; set "
                "peaks.bad_pixel_mask_key"
            )
        return np.asarray(handle[key][()])


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if key is None:
            if len(names) != 1:
                raise ConfigError(
                    f"peaks.bad_pixel_mask: {str(path)!r} holds arrays {names}; set "
                    "peaks.bad_pixel_mask_key to one of them"
                )
            key = names[0]
        if key not in names:
            raise ConfigError(
                f"peaks.bad_pixel_mask: {str(path)!r} has no array {key!r}; it holds {names}"
            )
        return np.asarray(archive[key])
