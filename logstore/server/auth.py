"""SASL authentication for the wire server: PLAIN and SCRAM-SHA-256 against a users file.

What this module knows: the server's side of SASL/PLAIN (RFC 4616) and SASL/SCRAM-SHA-256
(RFC 5802, RFC 7677) as Kafka brokers speak them, checked against a
:class:`~logstore.server.users.UserStore` (the users file and its format are
:mod:`logstore.server.users`; its names are re-exported here). What it does not know:
Kafka's framing (SaslHandshake, SaslAuthenticate, v0's raw tokens), connections or ACLs.
The connection answers SaslHandshake with :data:`MECHANISMS`, makes an exchange with
:func:`new_authenticator`, hands it each client token (:meth:`Authenticator.step`) and
sends back what it returns, or the error's ``kafka_code`` and message. No I/O happens here.

PLAIN is checked against the SCRAM credential (the password, salted with the stored salt
and iterations, must give the stored StoredKey; compared in constant time), so one
credential serves both mechanisms. Names and passwords are UTF-8 as sent, without
SASLprep, as in Kafka. An authorization id other than the user is refused, and so are
channel binding and SCRAM extensions (Kafka's ``tokenauth`` included).

An unknown user gets a SCRAM exchange like a known one (a fake salt, the same for that
name every time, and the usual iteration count) and fails at the last step with the same
error as a wrong password, Kafka's "Authentication failed during authentication due to
invalid credentials with SASL mechanism ...": nothing tells the client which it was. (Kafka
itself fails an unknown SCRAM user at the first message, which lets a client probe for
names; PostgreSQL's "mock salt" is the model here.) Errors::

    LogstoreError
    ├── AuthenticationError         kafka_code 58 (SASL_AUTHENTICATION_FAILED); .detail
    │   ├── UnsupportedSaslMechanismError   kafka_code 33; .mechanism
    │   └── IllegalSaslStateError           kafka_code 34 (a step after done or a failure)
    └── InvalidConfigError (also ValueError)
        └── UsersFileError          .path .line .field (logstore.server.users)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from abc import ABC, abstractmethod
from typing import NamedTuple

from logstore.errors import InvalidConfigError, LogstoreError
from logstore.server.users import (
    DEFAULT_ITERATIONS,
    KEY_BYTES,
    SCRAM_SHA_256,
    ScramCredential,
    UsersFileError,
    UserStore,
    add_user,
    hmac_sha256,
    load_users,
    remove_user,
)

PLAIN = "PLAIN"
MECHANISMS = (PLAIN, SCRAM_SHA_256)
"""The mechanisms the server offers, in the order a SaslHandshake answer lists them."""

__all__ = [
    "DEFAULT_ITERATIONS",
    "MECHANISMS",
    "PLAIN",
    "SCRAM_SHA_256",
    "AuthenticationError",
    "Authenticator",
    "IllegalSaslStateError",
    "ScramCredential",
    "UnsupportedSaslMechanismError",
    "UserStore",
    "UsersFileError",
    "add_user",
    "load_users",
    "new_authenticator",
    "remove_user",
]


class AuthenticationError(LogstoreError):
    """A SASL exchange failed. The message is safe to send to the client; ``detail``
    (for the server's log only, never the client) may say more, such as whether the
    user exists."""

    kafka_code = 58

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message


class UnsupportedSaslMechanismError(AuthenticationError):
    """The client asked for a mechanism the server does not offer."""

    kafka_code = 33

    def __init__(self, mechanism: str) -> None:
        super().__init__(
            f"Unsupported SASL mechanism {mechanism} (the server offers {', '.join(MECHANISMS)})"
        )
        self.mechanism = mechanism


class IllegalSaslStateError(AuthenticationError):
    """A SASL message arrived after the exchange had completed or failed."""

    kafka_code = 34


def _invalid_credentials(mechanism: str, detail: str) -> AuthenticationError:
    return AuthenticationError(
        "Authentication failed during authentication due to invalid credentials with SASL "
        f"mechanism {mechanism}",
        detail,
    )


def _malformed(mechanism: str, what: str) -> AuthenticationError:
    return AuthenticationError(f"Authentication failed: invalid SASL/{mechanism} message: {what}")


_AUTHZID_REFUSED = (
    "Authentication failed: Client requested an authorization id that is different from username"
)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Authenticator(ABC):
    """The server's side of one client's SASL exchange (make one with
    :func:`new_authenticator`).

    Feed each client token to :meth:`step` and send back what it returns. It raises
    :class:`AuthenticationError` (``kafka_code``, and a message safe to send) when the
    exchange fails, never another exception; after that, or once :attr:`done`, any
    further step raises :class:`IllegalSaslStateError`.
    """

    mechanism = ""

    def __init__(self, users: UserStore) -> None:
        self._users = users
        self._user: str | None = None
        self._over = False  # completed or failed

    @property
    def done(self) -> bool:
        """Whether the exchange completed: :attr:`user` is authenticated."""
        return self._user is not None

    @property
    def user(self) -> str | None:
        """The authenticated user, once :attr:`done`."""
        return self._user

    def step(self, client_bytes: bytes) -> bytes:
        """The server's answer to the client's next token (``b""`` for PLAIN's one)."""
        if self._over:
            raise IllegalSaslStateError(
                f"Unexpected SASL/{self.mechanism} message after the exchange "
                f"{'completed' if self.done else 'failed'}"
            )
        try:
            return self._step(bytes(client_bytes))
        except AuthenticationError:
            self._over = True
            raise
        except (ValueError, IndexError) as err:  # a parser bug must still fail typed
            self._over = True
            raise _malformed(self.mechanism, str(err) or type(err).__name__) from err

    def _succeed(self, user: str) -> None:
        self._user, self._over = user, True

    @abstractmethod
    def _step(self, message: bytes) -> bytes:
        """The answer to the client's next ``message``."""


class _Plain(Authenticator):
    """RFC 4616: one message ``[authzid] NUL authcid NUL passwd``, an empty answer."""

    mechanism = PLAIN

    def _step(self, message: bytes) -> bytes:
        parts = message.split(b"\0")
        if len(parts) != 3:
            raise _malformed(PLAIN, f"expected 3 NUL-separated fields, got {len(parts)}")
        try:
            authzid, authcid = parts[0].decode("utf-8"), parts[1].decode("utf-8")
            parts[2].decode("utf-8")
        except UnicodeDecodeError as err:
            raise _malformed(PLAIN, "not UTF-8") from err
        if not authcid:
            raise AuthenticationError("Authentication failed: username not specified")
        if not parts[2]:
            raise AuthenticationError("Authentication failed: password not specified")
        if authzid and authzid != authcid:
            raise AuthenticationError(_AUTHZID_REFUSED)
        credential, known = self._users.lookup(authcid)
        if not (credential.verify_password(parts[2]) and known):
            raise _invalid_credentials(PLAIN, "unknown user" if not known else "wrong password")
        self._succeed(authcid)
        return b""


def _sasl_name(text: str) -> str:
    """RFC 5802's saslname unescaped (``=2C`` is ``,``, ``=3D`` is ``=``; any other ``=``
    fails)."""
    if "=" in text.replace("=2C", "").replace("=3D", ""):
        raise _malformed(SCRAM_SHA_256, "a user name with '=' not followed by 2C or 3D")
    return text.replace("=2C", ",").replace("=3D", "=")


def _printable(nonce: str) -> bool:
    return bool(nonce) and all("!" <= c <= "~" and c != "," for c in nonce)


class _ClientFirst(NamedTuple):
    """What a SCRAM exchange keeps from its first round."""

    user: str
    gs2_header: str
    bare: str  # client-first-message-bare
    server_first: str
    nonce: str  # client's + server's
    credential: ScramCredential
    known: bool  # False: a fake credential for an unknown user


class _Scram(Authenticator):
    """RFC 5802: client-first, server-first, client-final, server-final."""

    mechanism = SCRAM_SHA_256

    def __init__(self, users: UserStore, server_nonce: str | None = None) -> None:
        super().__init__(users)
        if server_nonce is not None and not _printable(server_nonce):
            raise InvalidConfigError(f"a server nonce must be printable, not {server_nonce!r}")
        self._server_nonce = server_nonce or secrets.token_urlsafe(24)
        self._first: _ClientFirst | None = None

    def _step(self, message: bytes) -> bytes:
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError as err:
            raise _malformed(SCRAM_SHA_256, "not UTF-8") from err
        if self._first is None:
            return self._client_first(text)
        return self._client_final(text, self._first)

    def _client_first(self, text: str) -> bytes:
        parts = text.split(",", 2)
        if len(parts) != 3:
            raise _malformed(SCRAM_SHA_256, "client-first: expected 'n,,n=USER,r=NONCE'")
        flag, authzid, bare = parts
        if flag.startswith("p="):
            raise _malformed(SCRAM_SHA_256, "channel binding (p=) is not supported")
        if flag not in ("n", "y") or (authzid and not authzid.startswith("a=")):
            raise _malformed(SCRAM_SHA_256, "client-first: a bad GS2 header")
        attributes = bare.split(",")
        if attributes[0].startswith("m="):
            raise _malformed(SCRAM_SHA_256, "mandatory extensions (m=) are not supported")
        if len(attributes) < 2 or attributes[0][:2] != "n=" or attributes[1][:2] != "r=":
            raise _malformed(SCRAM_SHA_256, "client-first: expected 'n=USER,r=NONCE'")
        if len(attributes) > 2:
            raise _malformed(SCRAM_SHA_256, f"unsupported extension {attributes[2][:20]!r}")
        user, nonce = _sasl_name(attributes[0][2:]), attributes[1][2:]
        if not user or not _printable(nonce):
            raise _malformed(SCRAM_SHA_256, "client-first: an empty user name or a bad nonce")
        if authzid and _sasl_name(authzid[2:]) != user:
            raise AuthenticationError(_AUTHZID_REFUSED)
        credential, known = self._users.lookup(user)
        nonce += self._server_nonce
        server_first = f"r={nonce},s={_b64(credential.salt)},i={credential.iterations}"
        self._first = _ClientFirst(
            user, f"{flag},{authzid},", bare, server_first, nonce, credential, known
        )
        return server_first.encode("ascii")

    def _client_final(self, text: str, first: _ClientFirst) -> bytes:
        user, gs2_header, bare, server_first, nonce, credential, known = first
        attributes = text.split(",")
        if (
            len(attributes) < 3
            or attributes[0][:2] != "c="
            or attributes[1][:2] != "r="
            or attributes[-1][:2] != "p="
        ):
            raise _malformed(SCRAM_SHA_256, "client-final: expected 'c=...,r=...,p=...'")
        if len(attributes) > 3:
            raise _malformed(SCRAM_SHA_256, f"unsupported extension {attributes[2][:20]!r}")
        if attributes[0][2:] != _b64(gs2_header.encode("utf-8")):
            raise _malformed(SCRAM_SHA_256, "client-final: channel binding data (c=) does "
                             "not match the client-first message's GS2 header")
        if attributes[1][2:] != nonce:
            raise AuthenticationError("Authentication failed: Invalid client nonce in the "
                                      "final client message.")
        try:
            proof = base64.b64decode(attributes[-1][2:].encode("ascii"), validate=True)
        except ValueError as err:  # binascii.Error, UnicodeEncodeError
            raise _malformed(SCRAM_SHA_256, "client-final: proof (p=) is not base64") from err
        if len(proof) != KEY_BYTES:
            raise _malformed(SCRAM_SHA_256, f"client-final: a proof of {len(proof)} bytes")
        auth_message = ",".join((bare, server_first, ",".join(attributes[:-1]))).encode()
        signature = hmac_sha256(credential.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        matches = hmac.compare_digest(hashlib.sha256(client_key).digest(), credential.stored_key)
        if not (matches and known):
            raise _invalid_credentials(
                SCRAM_SHA_256, "unknown user" if not known else "wrong password"
            )
        self._succeed(user)
        return b"v=" + _b64(hmac_sha256(credential.server_key, auth_message)).encode("ascii")


def new_authenticator(
    mechanism: str, users: UserStore, *, server_nonce: str | None = None
) -> Authenticator:
    """A fresh exchange of ``mechanism`` against ``users``.

    Args:
        mechanism: the name from the client's SaslHandshake (one of :data:`MECHANISMS`).
        users: the credentials (:func:`load_users`).
        server_nonce: SCRAM only, for tests: the server's part of the nonce (by default a
            fresh random one; never pass a fixed one in production).

    Raises:
        UnsupportedSaslMechanismError: ``mechanism`` is not one of :data:`MECHANISMS`.
    """
    if mechanism == PLAIN:
        return _Plain(users)
    if mechanism == SCRAM_SHA_256:
        return _Scram(users, server_nonce)
    raise UnsupportedSaslMechanismError(mechanism)
