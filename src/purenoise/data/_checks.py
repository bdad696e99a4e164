"""Option validation shared by the dataset builders (errors name the dataset, option and value)."""
from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

from purenoise.errors import ConfigError

__all__ = ["check_int", "check_ratio", "check_choice", "check_bool", "check_fraction", "check_size"]


def check_int(
    dataset: str, key: str, value: Any, *, minimum: int | None = None, allow_none: bool = False
) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{dataset}: option {key} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{dataset}: option {key} must be >= {minimum}, got {value!r}")
    return int(value)


def check_ratio(dataset: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 1:
        raise ConfigError(
            f"{dataset}: option ratio must be a number >= 1 (n_max / n_min; 1 = balanced), got {value!r}"
        )
    return float(value)


def check_choice(dataset: str, key: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ConfigError(f"{dataset}: option {key}={value!r} is not one of {list(choices)}")
    return value


def check_bool(dataset: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{dataset}: option {key} must be true or false, got {value!r}")
    return value


def check_fraction(dataset: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise ConfigError(f"{dataset}: option {key} must be a fraction in (0, 1), got {value!r}")
    return float(value)


#: The largest image side a dataset option may ask for: above any size purenoise trains at, and
#: small enough that resizing images to it cannot exhaust memory.
MAX_IMAGE_SIDE = 4096


def check_size(dataset: str, key: str, value: Any, *, allow_none: bool = False) -> tuple[int, int] | None:
    """An image size given as ``S`` or ``(H, W)``, returned as ``(H, W)``; sides from 1 to 4096."""
    if value is None and allow_none:
        return None
    pair = [value, value] if isinstance(value, numbers.Integral) else value
    if (
        isinstance(pair, Sequence)
        and not isinstance(pair, str)
        and len(pair) == 2
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 < v <= MAX_IMAGE_SIDE for v in pair)
    ):
        return int(pair[0]), int(pair[1])
    raise ConfigError(f"{dataset}: option {key} must be a positive size S or [H, W] with sides up to "
                      f"{MAX_IMAGE_SIDE}, got {value!r}")
