"""The pixels a CrystFEL geometry marks bad: ``bad*`` regions, ``no_index`` panels and masks.

What the pixel screen and the peak finder take as extra bad pixels when ``output.geometry_file``
is set; the rules are CrystFEL 0.11's (``libcrystfel/src/datatemplate.c``, ``image.c``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from peaknet_serve.cxi.geometry import (
    EXTENT_KEYS,
    Geometry,
    Value,
    direction,
    mask_file_path,
    read_geometry,
)
from peaknet_serve.cxi.layout import PanelLayout

logger = logging.getLogger(__name__)


def geometry_bad_pixels(
    geometry_file: str | Path | None,
) -> Callable[[tuple[int, ...]], np.ndarray] | None:
    """``bad_pixel_mask`` of a configured geometry file as a function of the frame shape.

    What the pixel screen and the peak finder take as extra bad pixels, so the geometry's
    ``bad_`` regions and masks leave the model's normalisation and every peak. None without a
    file.

    Raises:
        ConfigError: the file cannot be read or a line cannot be honoured.
    """
    if geometry_file is None:
        return None
    return functools.partial(bad_pixel_mask, read_geometry(geometry_file))


def bad_pixel_mask(geometry: Geometry, frame_shape: tuple[int, ...]) -> np.ndarray:
    """The pixels the geometry marks bad, as a boolean array of ``frame_shape`` (True = bad).

    From the ``bad*`` regions (fs/ss ones in data coordinates, x/y ones in the lab frame, a pixel
    counting when its corner lies strictly inside, as CrystFEL's ``draw_bad_region_xy`` does),
    panels with ``no_index = 1``, and every ``mask``/``maskN_*`` whose file can be read (CrystFEL's
    rule: bad unless all ``goodbits`` are set, and bad when any ``badbits`` is set; a relative
    ``mask_file`` is looked up beside the geometry file, then in the working directory). A mask
    file that cannot be read is logged and left out. Pixels outside every panel are bad.

    Args:
        geometry: from ``read_geometry``.
        frame_shape: (H, W) for 2-D frames, or (P, H, W) for a panel stack.

    Raises:
        ConfigError: the geometry does not fit frames of this shape.
    """
    layout = PanelLayout.for_frames(geometry, frame_shape)
    stored = np.ones(layout.stored_shape, dtype=bool)
    for name in geometry.panels:
        min_fs, max_fs, min_ss, max_ss = geometry.extent(name)
        stored[min_ss : max_ss + 1, min_fs : max_fs + 1] = _is_true(
            geometry.panels[name].get("no_index")
        )
    for props in geometry.bad_regions.values():
        if "min_x" in props:
            for panel in geometry.panels:
                _mark_xy(geometry, panel, props, stored)
        else:
            fs0, fs1, ss0, ss1 = (int(float(props[key].text)) for key in EXTENT_KEYS)
            stored[ss0 : ss1 + 1, fs0 : fs1 + 1] = True
    for name in geometry.panels:
        for mask in geometry.masks(name).values():
            _apply_mask(geometry, name, mask, stored)
    return layout.disassemble(stored)


def _is_true(value: Value | None) -> bool:
    return value is not None and value.text.strip().lower() in ("1", "true", "yes")


def _mark_xy(geometry: Geometry, panel: str, region: dict[str, Value], stored: np.ndarray
             ) -> None:
    props = geometry.panels[panel]
    min_fs, max_fs, min_ss, max_ss = geometry.extent(panel)
    fs_vec = direction(props["fs"].text)
    ss_vec = direction(props["ss"].text)
    ss, fs = np.mgrid[0 : max_ss - min_ss + 1, 0 : max_fs - min_fs + 1]
    x = fs * fs_vec[0] + ss * ss_vec[0] + float(props["corner_x"].text)
    y = fs * fs_vec[1] + ss * ss_vec[1] + float(props["corner_y"].text)
    inside = (
        (x > float(region["min_x"].text)) & (x < float(region["max_x"].text))
        & (y > float(region["min_y"].text)) & (y < float(region["max_y"].text))
    )
    stored[min_ss : max_ss + 1, min_fs : max_fs + 1] |= inside


def _apply_mask(geometry: Geometry, panel: str, mask: dict[str, Value], stored: np.ndarray
                ) -> None:
    data, file = mask.get("data"), mask.get("file")
    if data is None or file is None:
        return
    path = mask_file_path(geometry, file.text)
    min_fs, max_fs, min_ss, max_ss = geometry.extent(panel)
    try:
        with h5py.File(path, "r") as handle:
            values = np.asarray(handle[data.text][min_ss : max_ss + 1, min_fs : max_fs + 1])
    except (OSError, KeyError, ValueError, TypeError) as exc:
        logger.warning("%s: mask %s:%s not used: %s", geometry.where(file), path, data.text, exc)
        return
    good = int(float.fromhex(_hex(mask["goodbits"].text))) if "goodbits" in mask else 0
    bad = int(float.fromhex(_hex(mask["badbits"].text))) if "badbits" in mask else 0
    values = values.astype(np.int64)
    stored[min_ss : max_ss + 1, min_fs : max_fs + 1] |= ((values & good) != good) | (
        (values & bad) != 0
    )


def _hex(text: str) -> str:
    text = text.strip()
    return text if text.lower().startswith("0x") else hex(int(float(text)))
