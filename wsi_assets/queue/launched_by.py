"""Who launched a run: the audit tags deploy/auth's proxy makes every UI launch carry.

The proxy authenticates the user and passes the name in one header; only the webserver started
by wsi_assets.cli.webserver believes that header (a webserver reachable without the proxy must
not). The name lands in two tags: ours, and Dagster's own `user`, which the UI's runs and
backfills tables show as "Launched by" and filter on. `wsi/user` is a different thing: the
tenant whose files the run reads.
"""

from __future__ import annotations

import re

LAUNCHED_BY_TAG = "wsi/launched_by"
DAGSTER_USER_TAG = "user"
PROXY_USER_HEADER = "x-wsi-user"
# Also the rule for names in deploy/auth's users file: safe in a header, an nginx map and a tag,
# and no two names that differ only in case (nginx's map compares names case-insensitively).
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class InvalidProxyUser(ValueError):
    """The proxy's user header holds something that is not a user name."""


def launched_by_tags(user: str | None) -> dict[str, str]:
    """The audit tags of a launch by this proxy user; {} where no proxy user is known."""
    if user is None or user == "":
        return {}
    if not USER_NAME.fullmatch(user):
        shown = user if len(user) <= 80 else user[:80] + "…"
        raise InvalidProxyUser(
            f"the proxy's {PROXY_USER_HEADER} header {shown!r} is not a user name (letters, digits, . _ @ -; at most 64)"
        )
    return {LAUNCHED_BY_TAG: user, DAGSTER_USER_TAG: user}
