"""Whether a Celery worker still answers, asked over the broker (for run monitoring).

A Celery worker killed as a whole (machine lost, SIGKILL, OOM) never reports its task: the
task was acknowledged when it started, so nothing redelivers it, and the run that sent it would
wait for ever. The run launcher asks the worker named in the step's "in celery worker" event
and fails the run when it is gone.
"""

from __future__ import annotations

PING_TIMEOUT_S = 2.0
PING_ATTEMPTS = 2  # one missed reply (a busy broker) must not fail a healthy run


def unanswered_workers(
    broker: str, hostnames: list[str], timeout: float = PING_TIMEOUT_S, attempts: int = PING_ATTEMPTS
) -> list[str]:
    """The workers among `hostnames` that answered none of `attempts` pings."""
    from celery import Celery

    missing = set(hostnames)
    app = Celery("wsi-liveness", broker=broker)
    try:
        for _ in range(attempts):
            if not missing:
                break
            replies = app.control.ping(destination=sorted(missing), timeout=timeout) or []
            for reply in replies:
                missing -= set(reply)
    finally:
        app.close()
    return sorted(missing)
