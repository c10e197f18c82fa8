"""The users file the wire server authenticates against, and the SCRAM credentials in it.

What this module knows: SCRAM-SHA-256 credentials (RFC 5802, RFC 7677), the users file,
and how to read, check and atomically rewrite it through
:class:`~logstore.storage.files.FileSystem` (its only I/O). What it does not know: SASL
exchanges, which :mod:`logstore.server.auth` runs against a :class:`UserStore`.

The users file (version 1) is JSON Lines in UTF-8: a header line, then one line a user,
sorted by name (long lines are folded here)::

    {"format": "logstore-users", "version": 1}
    {"user": "alice", "mechanism": "SCRAM-SHA-256", "iterations": 4096,
     "salt": "<base64>", "stored_key": "<base64>", "server_key": "<base64>"}

It never holds a password, only each user's SCRAM-SHA-256 credential as RFC 5802 defines
it (Kafka's SCRAM credential fields; bytes in standard base64): ``iterations`` within
Kafka's bounds, 4096 to 16384; a non-empty ``salt``; ``stored_key`` = H(ClientKey) and
``server_key``, 32 bytes each. Blank lines are ignored; anything else (an unknown field, a
user twice, a missing header, a newer version) is a :class:`UsersFileError` naming the
line and field. StoredKey and ServerKey are still secrets (StoredKey and one observed
exchange let a client be impersonated), so the file is written 0600.

Errors: :class:`UsersFileError` (an :class:`~logstore.errors.InvalidConfigError`, so also
a ``ValueError``) for the file; ``InvalidConfigError`` for a bad name, password or
iteration count given to :func:`add_user`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from logstore.errors import InvalidConfigError
from logstore.storage.files import DEFAULT_FS, FileSystem, temp_path

SCRAM_SHA_256 = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096
MIN_ITERATIONS, MAX_ITERATIONS = 4096, 16384
"""Kafka's bounds on a SCRAM-SHA-256 credential's iteration count."""
FORMAT, VERSION = "logstore-users", 1
KEY_BYTES = hashlib.sha256().digest_size
"""The size of StoredKey, ServerKey and a client's proof."""
_SALT_BYTES = 32
_FIELDS = ("user", "mechanism", "iterations", "salt", "stored_key", "server_key")
_FILE_MODE_UMASK = 0o077  # new users files are 0600 (FileSystem creates files 0644 & ~umask)


class UsersFileError(InvalidConfigError):
    """The users file is missing or malformed; the message names the line (1-based) and
    field when there is one."""

    def __init__(
        self, why: str, path: str, line: int | None = None, field: str | None = None
    ) -> None:
        where = f"users file {path}" + (f", line {line}" if line else "")
        where += f", field {field!r}" if field else ""
        super().__init__(f"{where}: {why}")
        self.path, self.line, self.field = path, line, field


# --------------------------------------------------------------------------- credentials


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA-256, SCRAM-SHA-256's HMAC()."""
    return hmac.new(key, message, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict standard base64 (ValueError on anything else)."""
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """One user's SCRAM-SHA-256 credential (RFC 5802): what the server keeps instead of
    the password."""

    salt: bytes = field(repr=False)
    iterations: int
    stored_key: bytes = field(repr=False)
    """H(ClientKey), where ClientKey = HMAC(SaltedPassword, "Client Key")."""
    server_key: bytes = field(repr=False)
    """HMAC(SaltedPassword, "Server Key")."""

    @classmethod
    def from_password(
        cls, password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> ScramCredential:
        """The credential for ``password`` (a fresh random salt unless one is given)."""
        salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
        salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
        return cls(
            salt,
            iterations,
            hashlib.sha256(hmac_sha256(salted, b"Client Key")).digest(),
            hmac_sha256(salted, b"Server Key"),
        )

    def verify_password(self, password: bytes) -> bool:
        """Whether ``password`` (UTF-8) gives this credential's StoredKey (constant time)."""
        salted = hashlib.pbkdf2_hmac("sha256", password, self.salt, self.iterations)
        stored_key = hashlib.sha256(hmac_sha256(salted, b"Client Key")).digest()
        return hmac.compare_digest(stored_key, self.stored_key)


class UserStore:
    """The users the server knows, with their credentials (read-only)."""

    def __init__(self, credentials: Mapping[str, ScramCredential] | None = None) -> None:
        self._credentials = dict(credentials or {})
        # Derives the fake credentials: from the ServerKeys (which no client sees), so a
        # fake salt stays the same across restarts for as long as the users do.
        keys = sorted(c.server_key for c in self._credentials.values())
        self._secret = (
            hashlib.sha256(b"logstore fake credentials\0" + b"".join(keys)).digest()
            if keys else secrets.token_bytes(KEY_BYTES)
        )
        counts = Counter(c.iterations for c in self._credentials.values())
        self._fake_iterations = counts.most_common(1)[0][0] if counts else DEFAULT_ITERATIONS

    def get(self, name: str) -> ScramCredential | None:
        return self._credentials.get(name)

    def names(self) -> list[str]:
        return sorted(self._credentials)

    def credentials(self) -> dict[str, ScramCredential]:
        return dict(self._credentials)

    def __contains__(self, name: object) -> bool:
        return name in self._credentials

    def __len__(self) -> int:
        return len(self._credentials)

    def lookup(self, name: str) -> tuple[ScramCredential, bool]:
        """``(credential, known)``: for an unknown name a fake credential no password
        matches, with the same salt every time for that name (while the users stay the
        same) and the iteration count most users have, so answers do not tell known names
        from unknown ones."""
        found = self._credentials.get(name)
        if found is not None:
            return found, True
        tag = name.encode("utf-8", "surrogatepass")
        return ScramCredential(
            hmac_sha256(self._secret, b"salt\0" + tag)[:_SALT_BYTES],
            self._fake_iterations,
            hmac_sha256(self._secret, b"stored key\0" + tag),
            hmac_sha256(self._secret, b"server key\0" + tag),
        ), False


# --------------------------------------------------------------------------- the file


def check_user_name(name: str) -> None:
    """Raise InvalidConfigError unless ``name`` can be a user: not empty, UTF-8, no
    control characters (a NUL could never pass PLAIN)."""
    if not name:
        raise InvalidConfigError("a user name must not be empty")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in name):
        raise InvalidConfigError(
            f"user name {name!r} holds a control character or an undecodable byte: "
            f"choose another"
        )


def _check_iterations(iterations: int) -> str | None:
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        return f"iterations must be an integer, not {iterations!r}"
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        return (
            f"iterations {iterations} is outside {MIN_ITERATIONS}..{MAX_ITERATIONS}, "
            f"Kafka's bounds for {SCRAM_SHA_256}"
        )
    return None


def _parse_line(entry: Any, path: str, number: int) -> tuple[str, ScramCredential]:
    def bad(why: str, name: str | None = None) -> UsersFileError:
        return UsersFileError(why, path, number, name)

    if not isinstance(entry, dict):
        raise bad("expected a JSON object with the fields " + ", ".join(_FIELDS))
    for name in _FIELDS:
        if name not in entry:
            raise bad("missing", name)
    for name in entry:
        if name not in _FIELDS:
            raise bad(f"unknown field (the fields are {', '.join(_FIELDS)})", name)
    user, mechanism, iterations = entry["user"], entry["mechanism"], entry["iterations"]
    if not isinstance(user, str):
        raise bad(f"expected a string, not {user!r}", "user")
    try:
        check_user_name(user)
    except InvalidConfigError as err:
        raise bad(str(err), "user") from err
    if mechanism != SCRAM_SHA_256:
        raise bad(f"unsupported mechanism {mechanism!r} (only {SCRAM_SHA_256})", "mechanism")
    if (why := _check_iterations(iterations)) is not None:
        raise bad(why, "iterations")
    values: dict[str, bytes] = {}
    for name in ("salt", "stored_key", "server_key"):
        try:
            values[name] = _unb64(entry[name])
        except (AttributeError, UnicodeEncodeError, ValueError) as err:
            raise bad("expected standard base64", name) from err
        if not values[name] or (name != "salt" and len(values[name]) != KEY_BYTES):
            why = "empty" if name == "salt" else f"expected {KEY_BYTES} bytes"
            raise bad(f"{why}, got {len(values[name])}", name)
    credential = ScramCredential(
        values["salt"], iterations, values["stored_key"], values["server_key"]
    )
    return user, credential


def parse_users(data: bytes, path: str) -> UserStore:
    """The users in ``data``, the content of users file ``path`` (named in errors)."""
    credentials: dict[str, ScramCredential] = {}
    lines: dict[str, int] = {}
    header = False
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as err:
            raise UsersFileError(f"not UTF-8 ({err.reason})", path, number) from err
        if not text:
            continue
        try:
            entry = json.loads(text)
        except (ValueError, RecursionError) as err:  # also numbers too long to convert
            raise UsersFileError(f"not a JSON object ({err})", path, number) from err
        if not header:
            if not isinstance(entry, dict) or entry.get("format") != FORMAT:
                raise UsersFileError(
                    f'expected the header {{"format": "{FORMAT}", "version": {VERSION}}}',
                    path, number,
                )
            if entry.get("version") != VERSION:
                raise UsersFileError(
                    f"version {entry.get('version')!r} is not {VERSION} (written by another "
                    f"logstore?)", path, number, "version",
                )
            header = True
            continue
        user, credential = _parse_line(entry, path, number)
        if user in credentials:
            raise UsersFileError(
                f"user {user!r} again (first on line {lines[user]})", path, number, "user"
            )
        credentials[user], lines[user] = credential, number
    if not header:
        raise UsersFileError("empty: no header line", path)
    return UserStore(credentials)


def format_users(users: UserStore) -> bytes:
    """The users file for ``users``: the header, then one line a user, sorted by name."""
    lines = [json.dumps({"format": FORMAT, "version": VERSION})]
    for user, c in sorted(users.credentials().items()):
        lines.append(json.dumps({
            "user": user, "mechanism": SCRAM_SHA_256, "iterations": c.iterations,
            "salt": _b64(c.salt), "stored_key": _b64(c.stored_key),
            "server_key": _b64(c.server_key),
        }, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def load_users(path: str | os.PathLike[str], *, fs: FileSystem = DEFAULT_FS) -> UserStore:
    """The users in the users file at ``path``.

    Raises:
        UsersFileError: the file is missing or malformed (the message names the line).
        StorageError: the file cannot be read.
    """
    path = os.fspath(path)
    try:
        data = fs.read_file(path)
    except FileNotFoundError as err:
        raise UsersFileError(
            "does not exist (create it with 'logstore users add NAME')", path
        ) from err
    return parse_users(data, path)


def _load_or_empty(path: str, fs: FileSystem) -> UserStore:
    try:
        data = fs.read_file(path)
    except FileNotFoundError:
        return UserStore()
    return parse_users(data, path)


def _write(path: str, users: UserStore, fs: FileSystem) -> None:
    """Replace the users file atomically (temp file beside it, fsync, rename), 0600.

    FileSystem creates files 0644 less the umask, so the temp file is created under a
    0077 umask (process-wide for that one ``open``; a leftover temp file, whose mode
    would be kept, is removed first). Not for concurrent writers: the last one wins.
    """
    tmp = temp_path(path)
    try:
        fs.unlink(tmp, missing_ok=True)
        previous = os.umask(_FILE_MODE_UMASK)
        try:
            fs.open(tmp, create=True).close()
        finally:
            os.umask(previous)
    except FileNotFoundError as err:
        raise UsersFileError(
            f"its directory {os.path.dirname(path) or '.'} does not exist", path
        ) from err
    fs.write_file_atomic(path, format_users(users), tmp=tmp)


def add_user(
    path: str | os.PathLike[str],
    name: str,
    password: str,
    *,
    iterations: int = DEFAULT_ITERATIONS,
    fs: FileSystem = DEFAULT_FS,
) -> bool:
    """Add user ``name`` to the users file at ``path`` (created if missing), or give an
    existing one a new password; True if the user is new.

    Raises:
        InvalidConfigError: a bad name, an empty password or iterations out of bounds.
        UsersFileError: the existing file is malformed (it is left as it is).
    """
    path = os.fspath(path)
    check_user_name(name)
    if not password:
        raise InvalidConfigError("a password must not be empty")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidConfigError("the password is not valid Unicode text") from err
    if (why := _check_iterations(iterations)) is not None:
        raise InvalidConfigError(why)
    users = _load_or_empty(path, fs)
    credentials = users.credentials()
    new = name not in credentials
    credentials[name] = ScramCredential.from_password(password, iterations=iterations)
    _write(path, UserStore(credentials), fs)
    return new


def remove_user(
    path: str | os.PathLike[str], name: str, *, fs: FileSystem = DEFAULT_FS
) -> bool:
    """Remove user ``name`` from the users file at ``path``; False (and the file left as
    it is, or not created) if there is no such user."""
    path = os.fspath(path)
    credentials = _load_or_empty(path, fs).credentials()
    if credentials.pop(name, None) is None:
        return False
    _write(path, UserStore(credentials), fs)
    return True

