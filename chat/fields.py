"""Parsing of the contract's flexible fields (n8n sends numbers and booleans as strings).

Pure functions; each raises ValueError when the value cannot be read, and the schema turns that
into the contract's 400 message naming the field.
"""

import math
import re
from typing import Any

INT64_MAX = 2**63 - 1
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+(?:\.0*)?")
_TRUE_TEXT = frozenset({"1", "true", "yes"})


def parse_int(value: Any) -> int:
    """A JSON integer, an integral float, or a numeric string (" 30.0 " -> 30)."""
    if isinstance(value, bool):
        raise ValueError("bool is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError("not an integral number")
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if not _INTEGER_TEXT.fullmatch(text):
            raise ValueError("not a numeric string")
        number = int(text.split(".", 1)[0])
    else:
        raise ValueError("not a number")
    if abs(number) > INT64_MAX:
        raise ValueError("out of range")
    return number


def parse_positive_int(value: Any) -> int:
    number = parse_int(value)
    if number <= 0:
        raise ValueError("not greater than 0")
    return number


def parse_bool(value: Any) -> bool:
    """A JSON bool, a number (0 is false), or a string ("1", "true", "yes" are true)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if isinstance(value, float) and math.isnan(value):
            raise ValueError("NaN is not a boolean")
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXT
    raise ValueError("not a boolean")
