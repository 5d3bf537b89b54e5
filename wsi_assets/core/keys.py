"""Partition keys `<user>/<branch>/<slide stem>` and the names allowed in them."""

from __future__ import annotations

import re
from dataclasses import dataclass

# No leading '-': a name that reads as an option on a command line (`-rf`) is refused.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
MAX_NAME_LENGTH = 100
DEFAULT_BRANCH = "main"


class InvalidSlideKey(ValueError):
    """A partition key or one of its parts cannot be used."""


def name_problem(name: str, what: str) -> str | None:
    """Why `name` cannot be a user, branch or slide name, or None when it can."""
    if not name:
        return f"{what} name is empty"
    # Reasons are one line: control characters and undecodable bytes are shown escaped.
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    if len(name) > MAX_NAME_LENGTH:
        return f"{what} name '{shown[:40]}...' is longer than {MAX_NAME_LENGTH} characters"
    if not NAME_PATTERN.match(name):
        return f"{what} name '{shown}' may only use letters, digits, '.', '_' and '-' (and must not start with '.' or '-')"
    return None


@dataclass(frozen=True)
class SlideKey:
    user: str
    branch: str
    stem: str

    def __post_init__(self) -> None:
        for what, value in (("user", self.user), ("branch", self.branch), ("slide", self.stem)):
            problem = name_problem(value, what)
            if problem:
                raise InvalidSlideKey(problem)

    @property
    def partition_key(self) -> str:
        return f"{self.user}/{self.branch}/{self.stem}"

    @classmethod
    def parse(cls, partition_key: str) -> SlideKey:
        parts = partition_key.split("/")
        if len(parts) != 3:
            raise InvalidSlideKey(f"partition key '{partition_key}' must look like <user>/<branch>/<slide>")
        return cls(*parts)

    def __str__(self) -> str:
        return self.partition_key
