"""A user's value quoted in a one-line message, at a bounded cost whatever the value is.

`repr` walks the whole value: a list that holds itself nine deep nine times over (YAML aliases,
a 296-byte file) has 9⁹ leaves, and a 64 KiB string makes a 64 KiB message. reprlib looks at the
first few items of the first two levels only, and the result is cut to `limit` characters.
"""

from __future__ import annotations

import reprlib

_REPR = reprlib.Repr()
_REPR.maxlevel = 2
_REPR.maxlist = _REPR.maxtuple = _REPR.maxset = _REPR.maxfrozenset = _REPR.maxdeque = _REPR.maxarray = 4
_REPR.maxdict = 4
_REPR.maxstring = 80
_REPR.maxlong = 40
_REPR.maxother = 80


def short_repr(value, limit: int = 80) -> str:
    """repr(value) for a message: at most `limit` characters, '...' where it was cut."""
    try:
        # A string is cut before repr, so `limit` (not reprlib's 80) decides how much of a long path shows.
        text = repr(value[:limit]) if isinstance(value, str) else _REPR.repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int past Python's 4300-digit str limit
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: max(limit - 3, 0)] + "..."
