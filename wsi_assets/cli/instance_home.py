"""The Dagster instance the command-line tools read: the one scripts/run.sh set up, unless told otherwise.

run.sh uses $DAGSTER_HOME, or the checkout's `.dagster_home/`; so do `submit` and `queue`, so that
they work from a fresh shell without the user exporting anything. Opening the instance loads no
Dagster definitions (only dagster.yaml's instance classes).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "DAGSTER_HOME"
HOME_FOLDER = ".dagster_home"
WEBSERVER_URL_ENV = "WSI_WEBSERVER_URL"
# run.sh writes the address it serves here, so a command in any shell links to the right port.
WEBSERVER_URL_FILE = "webserver_url"
CHECKOUT = Path(__file__).resolve().parents[2]


class NoInstance(RuntimeError):
    """No Dagster instance to read; the message says what to do, in one line."""


def instance_home(environ=os.environ, cwd: Path | None = None, checkout: Path = CHECKOUT) -> Path:
    """$DAGSTER_HOME when set; else `.dagster_home/` of the current folder or of this checkout, where it holds dagster.yaml."""
    if environ.get(HOME_ENV):
        home = Path(environ[HOME_ENV])
        if not (home / "dagster.yaml").is_file():
            raise NoInstance(
                f"cannot open the Dagster instance: {HOME_ENV}={home} holds no dagster.yaml: point it at the folder Dagster was started with (scripts/run.sh uses {checkout / HOME_FOLDER})"
            )
        return home
    for base in dict.fromkeys(((cwd or Path.cwd()).resolve(), checkout)):
        if (base / HOME_FOLDER / "dagster.yaml").is_file():
            return base / HOME_FOLDER
    raise NoInstance(
        f"cannot open the Dagster instance: {HOME_ENV} is not set and {checkout / HOME_FOLDER} has no dagster.yaml; "
        f"start Dagster with scripts/run.sh once, or set {HOME_ENV} to the daemon's instance folder"
    )


def use_instance_home() -> Path:
    """Find the instance and export it as $DAGSTER_HOME, for Dagster and for the commands this process starts."""
    home = instance_home().resolve()  # Dagster wants an absolute path
    os.environ[HOME_ENV] = str(home)
    return home


def open_instance():
    """The instance as a context manager; NoInstance with a one-line reason when it cannot be opened."""
    use_instance_home()
    from dagster import DagsterInstance

    try:
        return DagsterInstance.get()
    except Exception as error:  # noqa: BLE001 - any instance problem is one line for the user
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise NoInstance(f"cannot open the Dagster instance in {os.environ[HOME_ENV]}: {first}") from error


def served_url(environ=os.environ) -> str | None:
    """The webserver's address: $WSI_WEBSERVER_URL, else the one run.sh wrote beside the instance; None if unknown."""
    if environ.get(WEBSERVER_URL_ENV):
        return environ[WEBSERVER_URL_ENV]
    if environ.get(HOME_ENV):
        try:
            return (Path(environ[HOME_ENV]) / WEBSERVER_URL_FILE).read_text().strip() or None
        except OSError:
            return None
    return None


def served_url_and_home() -> tuple[str | None, NoInstance | None]:
    """The webserver's address and, when no instance folder is found, why (kept for the fallback's message)."""
    try:
        use_instance_home()  # also where run.sh wrote the webserver's address
        no_home = None
    except NoInstance as error:
        no_home = error
    return served_url(), no_home
