"""The pydantic base class shared by every configuration section."""

from __future__ import annotations

from typing import get_args

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A configuration section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_order(
    section: BaseModel, low: str, high: str, *, strict: bool = False, why: str = ""
) -> None:
    """Raise ValueError when ``high`` is below ``low`` (or equal, with ``strict``); a limit that
    is None (null) is no limit and always in order. For a section's ``model_validator``."""
    low_value, high_value = getattr(section, low), getattr(section, high)
    if low_value is None or high_value is None:
        return
    if high_value < low_value or (strict and high_value == low_value):
        nullable = type(None) in get_args(type(section).model_fields[high].annotation)
        raise ValueError(
            f"{high} must be {'>' if strict else '>='} {low}"
            + (" (or null)" if nullable else "")
            + (f": {why}" if why else "")
        )
