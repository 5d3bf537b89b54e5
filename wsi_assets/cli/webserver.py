"""dagster-webserver for deploy/auth's proxy: what a request launches is tagged with the proxy's user.

    python -m wsi_assets.cli.webserver [dagster-webserver options, e.g. -h 127.0.0.1 -p 3002 --read-only]

Runs, re-executions and backfills launched through it carry `wsi/launched_by` and `user` from
the X-WSI-User header. Start it only behind the proxy (deploy/auth/start.sh does), listening on
127.0.0.1: it believes that header.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

# The code server's socket, when one is starting beside this webserver (wsi_assets.cli.auth_proxy).
WAIT_FOR_CODE_SERVER = "WSI_WAIT_FOR_CODE_SERVER"
CODE_SERVER_WAIT_S = 300


def wait_for(socket: Path, timeout: float = CODE_SERVER_WAIT_S) -> None:
    """Wait for the code server: started before it answers, the UI would show its location broken."""
    deadline = time.time() + timeout
    while not socket.exists() and time.time() < deadline:
        time.sleep(0.2)


def main() -> None:
    from dagster_webserver.cli import main as dagster_webserver_main

    from wsi_assets.queue.dagster_adapter import trust_proxy_user_header

    trust_proxy_user_header()
    if os.environ.get(WAIT_FOR_CODE_SERVER):
        wait_for(Path(os.environ[WAIT_FOR_CODE_SERVER]))
    dagster_webserver_main()


if __name__ == "__main__":
    main()
