"""Dagster behind a login: nginx in front of a read-only webserver (viewers) and a full one (operators).

    python -m wsi_assets.cli.auth_proxy add-user NAME --role viewer|operator [--password-stdin]
    python -m wsi_assets.cli.auth_proxy start [--listen 127.0.0.1:8080] [--no-daemon] ...

`start` (what deploy/auth/start.sh runs) checks the users and roles files, writes nginx's config,
starts both webservers, the daemon and nginx on the instance of $DAGSTER_HOME, and stops them all
when it is stopped or when any of them exits. Files live in $WSI_AUTH_DIR ($DAGSTER_HOME/auth).
"""

from __future__ import annotations

import argparse
import getpass
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from wsi_assets.cli.auth_files import ROLES, AuthFileError, ProxySettings, add_user, check_auth_files, render_nginx_conf
from wsi_assets.cli.webserver import WAIT_FOR_CODE_SERVER

STOP_GRACE_S = 20
CODE_LOCATION = "wsi_assets.definitions"  # workspace.yaml's location name: runs keep one origin


def default_auth_dir() -> Path:
    if os.environ.get("WSI_AUTH_DIR"):
        return Path(os.environ["WSI_AUTH_DIR"])
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home") / "auth"


def find_nginx() -> str:
    found = os.environ.get("WSI_NGINX") or shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise AuthFileError("nginx is not installed: apt-get install nginx (or set WSI_NGINX to its path)")
    return found


def is_loopback(listen: str) -> bool:
    host = listen.rpartition(":")[0] if ":" in listen else ""
    return host in ("127.0.0.1", "localhost", "[::1]")


def workspace_yaml(runtime: Path) -> str:
    """A workspace naming the one code server all three services share."""
    return (
        f"load_from:\n  - grpc_server:\n      socket: {runtime.resolve() / 'code.sock'}\n      location_name: {CODE_LOCATION}\n"
    )


def nginx_command(nginx: str, runtime: Path) -> list[str]:
    return [nginx, "-p", str(runtime), "-e", str(runtime / "error.log"), "-c", str(runtime / "nginx.conf")]


def services(args, nginx: str, runtime: Path) -> dict[str, list[str]]:
    """The command of each process `start` runs, by name."""
    python = sys.executable
    dagster = str(Path(python).parent / "dagster")
    workspace = str(runtime / "workspace.yaml")
    webserver = [python, "-m", "wsi_assets.cli.webserver", "-h", "127.0.0.1", "-w", workspace]
    # One code server for both webservers and the daemon: the definitions load once, not three times.
    commands = {
        "code server": [
            dagster,
            "code-server",
            "start",
            "-s",
            str(runtime / "code.sock"),
            "-m",
            CODE_LOCATION,
            "-d",
            os.getcwd(),
            "--location-name",
            CODE_LOCATION,
        ],
        "viewer webserver": [*webserver, "-p", str(args.viewer_port), "--read-only"],
        "operator webserver": [*webserver, "-p", str(args.operator_port)],
        "nginx": [*nginx_command(nginx, runtime), "-g", "daemon off;"],
    }
    if args.daemon:
        commands["daemon"] = [str(Path(python).parent / "dagster-daemon"), "run", "-w", workspace]
    return commands


def create_instance() -> None:
    """Create the instance's storage now: two webservers creating a new SQLite instance at once
    both stamp its schema version, and neither can open it afterwards."""
    from dagster import DagsterInstance

    try:
        with DagsterInstance.get():
            pass
    except Exception as error:  # noqa: BLE001 - any instance problem is one line for the user
        raise AuthFileError(
            f"cannot open the Dagster instance in $DAGSTER_HOME ({os.environ['DAGSTER_HOME']}): {str(error).splitlines()[0]}"
        ) from None


def prepare(args) -> tuple[ProxySettings, list[str]]:
    """Check the files and settings, write nginx's config; (settings, warnings)."""
    if not os.environ.get("DAGSTER_HOME"):
        raise AuthFileError("DAGSTER_HOME is not set: both webservers must share one instance (deploy/auth/start.sh sets it)")
    if not is_loopback(args.listen) and not args.tls_cert and not args.insecure_http:
        raise AuthFileError(
            f"--listen {args.listen} is reachable from other machines: give --tls-cert and --tls-key (passwords would cross the network in clear), or --insecure-http if TLS ends in front of it"
        )
    auth_dir = Path(args.auth_dir)
    warnings = check_auth_files(auth_dir)
    runtime = auth_dir / "nginx"
    running = nginx_pid(runtime)
    if running:
        raise AuthFileError(
            f"a proxy already runs from {auth_dir} (nginx pid {running}); stop it first, or remove {runtime / 'nginx.pid'} if that process is not nginx"
        )
    settings = ProxySettings(
        auth_dir=auth_dir,
        runtime_dir=runtime,
        listen=args.listen,
        viewer_port=args.viewer_port,
        operator_port=args.operator_port,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
    )
    text = render_nginx_conf(settings)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (runtime / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    (runtime / "nginx.conf").write_text(text, encoding="utf-8")
    (runtime / "workspace.yaml").write_text(workspace_yaml(runtime), encoding="utf-8")
    # Left behind by a killed proxy; nothing would bind them again.
    for socket in ("refused.sock", "code.sock"):
        (runtime / socket).unlink(missing_ok=True)
    return settings, warnings


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def supervise(commands: dict[str, list[str]], logs: Path, env: dict[str, str], gated: set[str], ready) -> int:
    """Run every command until one exits or this process is asked to stop; then stop the rest.

    The `gated` commands start once `ready()` is true.
    """
    stopping = []

    def stop(signum, _frame):
        stopping.append(signal.Signals(signum).name)

    # Handlers (not SIG_IGN) also make the children start with default INT and TERM handling:
    # Dagster ignores SIGTERM if it inherits an ignored SIGINT.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    logs.mkdir(parents=True, exist_ok=True)
    running: dict[str, tuple[subprocess.Popen, Path]] = {}

    def launch(name: str) -> None:
        log = logs / (name.replace(" ", "-") + ".log")
        with open(log, "w") as out:
            running[name] = (subprocess.Popen(commands[name], stdout=out, stderr=subprocess.STDOUT, env=env), log)

    for name in commands:
        if name not in gated:
            launch(name)
    status = 0
    while not stopping:
        if gated and ready():
            for name in gated:
                launch(name)
            gated = set()
        ended = [(name, process.returncode, log) for name, (process, log) in running.items() if process.poll() is not None]
        if ended:
            name, code, log = ended[0]
            print(
                f"auth_proxy: the {name} exited (status {code}); stopping the rest. Last lines of {log}:\n{log_tail(log)}",
                file=sys.stderr,
            )
            status = 1
            break
        time.sleep(0.5)
    if stopping:
        print(f"auth_proxy: {stopping[0]} received; stopping", file=sys.stderr)
    stop_all({name: process for name, (process, _) in running.items()})
    return status


def stop_all(processes: dict[str, subprocess.Popen]) -> None:
    """SIGTERM to each, SIGKILL to what is left after STOP_GRACE_S; say which took longest."""
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    began = time.time()
    took: dict[str, float] = {}
    while len(took) < len(processes) and time.time() < began + STOP_GRACE_S:
        took.update(
            {name: time.time() - began for name, process in processes.items() if name not in took and process.poll() is not None}
        )
        time.sleep(0.1)
    for name, process in processes.items():
        if name not in took:
            print(f"auth_proxy: the {name} did not stop within {STOP_GRACE_S} s; killing it", file=sys.stderr)
            process.kill()
            process.wait()
            took[name] = time.time() - began
    slowest = max(took, key=took.get) if took else "none"
    print(f"auth_proxy: stopped in {time.time() - began:.1f} s (the {slowest} last)", file=sys.stderr)


def start(args) -> int:
    settings, warnings = prepare(args)
    create_instance()
    for warning in warnings:
        print(f"auth_proxy: warning: {warning}", file=sys.stderr)
    nginx = find_nginx()
    check = subprocess.run([*nginx_command(nginx, settings.runtime_dir), "-t", "-q"], capture_output=True, text=True)
    if check.returncode != 0:
        raise AuthFileError(
            f"nginx refuses {settings.runtime_dir / 'nginx.conf'}: {check.stderr.strip().splitlines()[-1] if check.stderr.strip() else check.returncode}"
        )
    commands = services(args, nginx, settings.runtime_dir)
    scheme = "https" if settings.tls_cert else "http"
    print(
        f"auth_proxy: {scheme}://{settings.listen} -> viewers: read-only webserver on 127.0.0.1:{args.viewer_port}, "
        f"operators: full webserver on 127.0.0.1:{args.operator_port}; logs in {settings.auth_dir / 'logs'}",
        flush=True,
    )
    code_socket = settings.runtime_dir / "code.sock"
    # The webservers import Dagster (slow) while the code server loads, then wait for its socket.
    env = {**os.environ, WAIT_FOR_CODE_SERVER: str(code_socket)}
    return supervise(commands, settings.auth_dir / "logs", env, gated={"daemon"} & set(commands), ready=code_socket.exists)


def add_user_command(args) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise AuthFileError("the two passwords differ")
    auth_dir = Path(args.auth_dir)
    add_user(auth_dir, args.name, args.role, password)
    print(f"{args.name}: {args.role} (files in {auth_dir})")
    reload_running_nginx(auth_dir / "nginx")
    return 0


def nginx_pid(runtime: Path) -> int | None:
    """The pid of the nginx running from this folder, if one is."""
    try:
        pid = int((runtime / "nginx.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def reload_running_nginx(runtime: Path) -> None:
    """nginx reads passwords at each login but roles only with its config: reload a running one."""
    pid = nginx_pid(runtime)
    if pid is not None:
        os.kill(pid, signal.SIGHUP)
        print("the running proxy reloaded its roles")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="python -m wsi_assets.cli.auth_proxy", description="Dagster behind nginx with viewer and operator logins."
    )
    root.add_argument(
        "--auth-dir",
        default=str(default_auth_dir()),
        help="users.htpasswd, roles.map, nginx's config and the logs (default $WSI_AUTH_DIR or $DAGSTER_HOME/auth)",
    )
    commands = root.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add-user", help="add a user, or change a user's role or password")
    adding.add_argument("name")
    adding.add_argument("--role", choices=ROLES, required=True)
    adding.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    starting = commands.add_parser(
        "start", help="start nginx, both webservers and the daemon; stop them all on Ctrl-C or SIGTERM"
    )
    starting.add_argument(
        "--listen", default=os.environ.get("WSI_AUTH_LISTEN", "127.0.0.1:8080"), help="nginx's address (default 127.0.0.1:8080)"
    )
    starting.add_argument("--viewer-port", type=int, default=int(os.environ.get("WSI_AUTH_VIEWER_PORT", "3001")))
    starting.add_argument("--operator-port", type=int, default=int(os.environ.get("WSI_AUTH_OPERATOR_PORT", "3002")))
    starting.add_argument("--no-daemon", dest="daemon", action="store_false", help="a daemon for this instance runs elsewhere")
    starting.add_argument("--tls-cert", default=os.environ.get("WSI_AUTH_TLS_CERT"))
    starting.add_argument("--tls-key", default=os.environ.get("WSI_AUTH_TLS_KEY"))
    starting.add_argument(
        "--insecure-http", action="store_true", help="allow plain HTTP on a non-loopback address (TLS ends in front of nginx)"
    )
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        sys.exit(start(args) if args.command == "start" else add_user_command(args))
    except AuthFileError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
