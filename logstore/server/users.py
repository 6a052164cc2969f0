"""The SASL users file: who may connect, each with a SCRAM-SHA-256 credential, never a password.

Owns the file's format, reading it (an error names the file and the line),
and adding or removing one user (the file rewritten whole, atomically, with
mode 0600: readers never see half a file). Knows nothing of Kafka's protocol.

The format, one user a line; blank lines and lines starting with ``#`` are
kept as they are::

    # NAME MECHANISM iterations=N salt=BASE64 stored_key=BASE64 server_key=BASE64
    alice SCRAM-SHA-256 iterations=8192 salt=... stored_key=... server_key=...

The fields after the mechanism may come in any order. A name is any
non-empty UTF-8 text without whitespace that does not start with ``#``. One
credential serves both SASL mechanisms: SCRAM checks the client's proof with
StoredKey, PLAIN derives StoredKey from the password it was sent with the
user's salt and compares.
"""

from __future__ import annotations

import base64
import binascii
import os

from .._fs import atomic_write
from ..errors import LogStoreError
from .scram import DEFAULT_ITERATIONS, MIN_ITERATIONS, Credential

__all__ = ["UsersFileError", "add_user", "format_entry", "load_users", "remove_user"]

MECHANISM = "SCRAM-SHA-256"
_FIELDS = ("iterations", "salt", "stored_key", "server_key")
_HEADER = (
    "# logstore SASL users (logstore users add): "
    "NAME SCRAM-SHA-256 iterations=N salt=B64 stored_key=B64 server_key=B64\n"
)


class UsersFileError(LogStoreError, ValueError):
    """A users file line that cannot be read, or a user name that cannot be stored."""


def check_name(name: str) -> None:
    """Raise ``UsersFileError`` unless ``name`` can be a users file entry."""
    if not name or name.startswith("#") or any(c.isspace() for c in name):
        raise UsersFileError(
            f"user name {name!r}: must be non-empty, without whitespace, not start with '#'"
        )


def format_entry(name: str, credential: Credential) -> str:
    """One line of the users file (with its newline)."""
    check_name(name)

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return (
        f"{name} {MECHANISM} iterations={credential.iterations} salt={b64(credential.salt)} "
        f"stored_key={b64(credential.stored_key)} server_key={b64(credential.server_key)}\n"
    )


def parse_line(line: str) -> tuple[str, Credential] | None:
    """A line's user and credential; ``None`` for a blank or comment line.

    Raises:
        UsersFileError: what is wrong with the line (without its place: the caller adds it).
    """
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    parts = text.split()
    if len(parts) < 2:
        raise UsersFileError(f"expected NAME {MECHANISM} FIELD=VALUE..., got {text[:40]!r}")
    name, mechanism, *fields = parts
    if mechanism != MECHANISM:
        raise UsersFileError(f"mechanism {mechanism!r}: only {MECHANISM} credentials are stored")
    values: dict[str, str] = {}
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep or key not in _FIELDS:
            raise UsersFileError(f"unknown field {field[:30]!r} (expected {', '.join(_FIELDS)})")
        if key in values:
            raise UsersFileError(f"field {key!r} given twice")
        values[key] = value
    missing = [f for f in _FIELDS if f not in values]
    if missing:
        raise UsersFileError(f"user {name!r}: missing {', '.join(missing)}")
    if not values["iterations"].isdigit() or int(values["iterations"]) < MIN_ITERATIONS:
        raise UsersFileError(
            f"user {name!r}: iterations {values['iterations']!r} is not a number >= {MIN_ITERATIONS}"
        )
    keys: dict[str, bytes] = {}
    for key in ("salt", "stored_key", "server_key"):
        try:
            keys[key] = base64.b64decode(values[key], validate=True)
        except binascii.Error:
            raise UsersFileError(f"user {name!r}: {key} is not base64") from None
    for key in ("stored_key", "server_key"):
        if len(keys[key]) != 32:
            raise UsersFileError(f"user {name!r}: {key} is {len(keys[key])} bytes, not 32")
    if not keys["salt"]:
        raise UsersFileError(f"user {name!r}: empty salt")
    return name, Credential(
        salt=keys["salt"],
        iterations=int(values["iterations"]),
        stored_key=keys["stored_key"],
        server_key=keys["server_key"],
    )


def load_users(path: str | os.PathLike[str]) -> dict[str, Credential]:
    """Every user of the file at ``path`` with their credential.

    Raises:
        UsersFileError: ``FILE:LINE: reason`` for a malformed line or a name given twice.
        OSError: the file cannot be read.
    """
    users: dict[str, Credential] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                entry = parse_line(line)
            except UsersFileError as exc:
                raise UsersFileError(f"{os.fspath(path)}:{number}: {exc}") from None
            if entry is None:
                continue
            name, credential = entry
            if name in users:
                raise UsersFileError(f"{os.fspath(path)}:{number}: user {name!r} given twice")
            users[name] = credential
    return users


def add_user(
    path: str | os.PathLike[str],
    name: str,
    password: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
) -> bool:
    """Store ``name`` with a new credential of ``password``; whether it replaced one.

    The file is made if missing. Its other lines are kept as they are (a
    malformed one fails the whole change, with its line number).
    """
    check_name(name)
    if not password:
        raise UsersFileError("an empty password cannot be stored")
    entry = format_entry(name, Credential.derive(password, iterations=iterations))
    lines, replaced = _lines_without(path, name)
    _write(path, [*(lines or [_HEADER]), entry])
    return replaced


def remove_user(path: str | os.PathLike[str], name: str) -> bool:
    """Remove ``name`` from the file; whether it was there."""
    lines, removed = _lines_without(path, name)
    if removed:
        _write(path, lines)
    return removed


def _lines_without(path: str | os.PathLike[str], name: str) -> tuple[list[str], bool]:
    """The file's lines, minus ``name``'s (checking every line), and whether it was there."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError:
        return [], False
    kept: list[str] = []
    found = False
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        try:
            entry = parse_line(line)
            if entry is not None and entry[0] in seen:
                raise UsersFileError(f"user {entry[0]!r} given twice")
        except UsersFileError as exc:
            raise UsersFileError(f"{os.fspath(path)}:{number}: {exc}") from None
        if entry is not None:
            seen.add(entry[0])
        if entry is not None and entry[0] == name:
            found = True
            continue
        kept.append(line if line.endswith("\n") else line + "\n")
    return kept, found


def _write(path: str | os.PathLike[str], lines: list[str]) -> None:
    """Replace the file with ``lines`` atomically and durably, readable by its owner only."""
    target = os.path.abspath(os.fspath(path))
    atomic_write(target, "".join(lines).encode("utf-8"), mode=0o600)
