"""deploy/auth's files: who may log in (an htpasswd file), their roles (an nginx map), nginx's config.

Plain functions over text files, so tests and the launcher share them. The users file is what
nginx's auth_basic reads (`name:hash`, hashes from `openssl passwd -6`, SHA-512 crypt); the
roles file is included in nginx's `map $remote_user $wsi_role` (`name role;` lines).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from wsi_assets.queue.launched_by import USER_NAME

ROLES = ("viewer", "operator")
USERS_FILE = "users.htpasswd"
ROLES_FILE = "roles.map"
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "auth" / "nginx.conf.template"


class AuthFileError(ValueError):
    """A users or roles file, or a setting, that the proxy cannot use as it is."""


def _name_problem(name: str) -> str | None:
    if not USER_NAME.fullmatch(name):
        return f"user name {name[:80]!r} is not allowed (letters, digits, . _ @ -; starts with a letter or digit; at most 64)"
    return None


def _lines(path: Path):
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if text and not text.startswith("#"):
            yield number, text


def _check_unique(names: list[tuple[int, str]], path: Path) -> None:
    seen: dict[str, str] = {}
    for number, name in names:
        other = seen.get(name.lower())
        if other is not None:
            same = "twice" if other == name else f"and {other!r}, which differs only in case"
            raise AuthFileError(f"{path} line {number}: user {name!r} is listed {same}; nginx would not tell them apart")
        seen[name.lower()] = name


def read_users(path: Path) -> list[str]:
    """The user names in an htpasswd file, checked: one line each, allowed names, hashed passwords."""
    if not path.is_file():
        raise AuthFileError(
            f"{path} does not exist: add a user with `python -m wsi_assets.cli.auth_proxy add-user NAME --role viewer|operator`"
        )
    names = []
    for number, text in _lines(path):
        name, colon, hashed = text.partition(":")
        problem = _name_problem(name) or (None if colon and hashed else "no ':<password hash>' after the name")
        if problem is None and not hashed.startswith(("$", "{SSHA}")):
            problem = "the password is not hashed (use add-user, or `openssl passwd -6`)"
        if problem:
            raise AuthFileError(f"{path} line {number}: {problem}")
        names.append((number, name))
    _check_unique(names, path)
    return [name for _, name in names]


def read_roles(path: Path) -> dict[str, str]:
    """{user: role} from a roles map (`name viewer;` or `name operator;` lines)."""
    if not path.is_file():
        raise AuthFileError(f"{path} does not exist: give each user a role with `python -m wsi_assets.cli.auth_proxy add-user`")
    names, roles = [], {}
    for number, text in _lines(path):
        parts = text.removesuffix(";").split()
        if not text.endswith(";") or len(parts) != 2:
            raise AuthFileError(f"{path} line {number}: expected `<user> <role>;`, got {text[:80]!r}")
        name, role = parts
        problem = _name_problem(name) or (None if role in ROLES else f"role {role[:40]!r} is not one of {', '.join(ROLES)}")
        if problem:
            raise AuthFileError(f"{path} line {number}: {problem}")
        names.append((number, name))
        roles[name] = role
    _check_unique(names, path)
    return roles


def check_auth_files(auth_dir: Path) -> list[str]:
    """Refuse unusable files (AuthFileError); return warnings about users who cannot get in."""
    users = read_users(auth_dir / USERS_FILE)
    roles = read_roles(auth_dir / ROLES_FILE)
    warnings = [
        f"user {name!r} has no role in {auth_dir / ROLES_FILE}: the proxy will answer 403" for name in users if name not in roles
    ]
    warnings += [
        f"{auth_dir / ROLES_FILE} gives {name!r} a role but {auth_dir / USERS_FILE} has no password for them"
        for name in roles
        if name not in users
    ]
    return warnings


def hash_password(password: str) -> str:
    """A SHA-512 crypt hash nginx's auth_basic accepts (through the system's crypt())."""
    if not password or "\n" in password:
        raise AuthFileError("the password must be one non-empty line")
    try:
        done = subprocess.run(
            ["openssl", "passwd", "-6", "-stdin"], input=password + "\n", capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise AuthFileError("openssl is not installed: it hashes the passwords (apt-get install openssl)") from None
    if done.returncode != 0 or not done.stdout.startswith("$6$"):
        raise AuthFileError(f"openssl passwd failed: {(done.stderr or done.stdout).strip()[:200]}")
    return done.stdout.strip()


def _replace_line(path: Path, name: str, line: str, separator: str) -> None:
    kept = []
    if path.exists():
        kept = [
            old
            for old in path.read_text(encoding="utf-8").splitlines()
            if old.strip().split(separator, 1)[0].strip().lower() != name.lower()
        ]
    temporary = path.with_name(path.name + ".tmp")
    # Only the proxy's own user needs to read the password hashes.
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("\n".join([*kept, line]) + "\n")
    os.replace(temporary, path)


def add_user(auth_dir: Path, name: str, role: str, password: str) -> None:
    """Add a user with this role and password, or change an existing user's."""
    problem = _name_problem(name) or (None if role in ROLES else f"role {role!r} is not one of {', '.join(ROLES)}")
    if problem:
        raise AuthFileError(problem)
    hashed = hash_password(password)
    auth_dir.mkdir(parents=True, exist_ok=True)
    _replace_line(auth_dir / USERS_FILE, name, f"{name}:{hashed}", ":")
    _replace_line(auth_dir / ROLES_FILE, name, f"{name} {role};", " ")


@dataclass(frozen=True)
class ProxySettings:
    """Where the proxy listens and where the two webservers are."""

    auth_dir: Path
    runtime_dir: Path
    listen: str
    viewer_port: int
    operator_port: int
    tls_cert: Path | None = None
    tls_key: Path | None = None


def render_nginx_conf(settings: ProxySettings, template: Path = TEMPLATE) -> str:
    """nginx.conf for these settings, from deploy/auth/nginx.conf.template."""
    if (settings.tls_cert is None) != (settings.tls_key is None):
        raise AuthFileError("TLS needs both a certificate and its key (--tls-cert and --tls-key)")
    tls = ""
    if settings.tls_cert is not None:
        tls = f"ssl_certificate {settings.tls_cert.resolve()};\n        ssl_certificate_key {settings.tls_key.resolve()};"
    # nginx's workers drop to `nobody` when the master runs as root; they must read the users
    # file, so they run as whoever started the proxy (as the webservers do).
    user = "user root root;" if os.geteuid() == 0 else ""
    refused = settings.runtime_dir.resolve() / "refused.sock"
    if len(str(refused)) > 100:  # AF_UNIX paths end at 108 bytes
        raise AuthFileError(f"{refused} is too long for a unix socket: set WSI_AUTH_DIR to a shorter folder")
    values = {
        "user_directive": user,
        "runtime": str(settings.runtime_dir.resolve()),
        "users": str((settings.auth_dir / USERS_FILE).resolve()),
        "roles": str((settings.auth_dir / ROLES_FILE).resolve()),
        "listen": settings.listen + (" ssl" if tls else ""),
        "tls": tls,
        "viewer_port": str(settings.viewer_port),
        "operator_port": str(settings.operator_port),
    }
    text = template.read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    if "{{" in text:
        raise AuthFileError(f"{template} has a placeholder this version does not fill: {text[text.index('{{') :][:40]}")
    return text
