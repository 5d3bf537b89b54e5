"""User text inside markdown that the Dagster UI renders: shown as the characters typed, never as markup.

A file name like `[x](http://evil.example)![i](http://evil.example/a.png).svs` would otherwise
become a live link and a remote image that loads for whoever opens the asset. CommonMark lets any
ASCII punctuation be escaped with a backslash and then shows it literally, so every one is: links,
images, emphasis, raw HTML (`<`), entities (`&`), table cells (`|`), code spans, and the `:`, `.`
and `@` that GFM's bare-URL autolinks need. Line breaks would end a table row or start a block, so
they become spaces. Tables are better still shown as MetadataValue.table, whose cells are plain text.
"""

from __future__ import annotations

import re
import string

_SPECIAL = re.compile("([" + re.escape(string.punctuation) + "])")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")


def escape_markdown(text: object) -> str:
    """`text` as one line of markdown that renders exactly as `text` reads."""
    return _SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", str(text)))
