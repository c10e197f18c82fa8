"""SaslHandshake and SaslAuthenticate: one connection's authentication.

Where the server asks for SASL (``sasl_mechanisms``), a connection may send only
ApiVersions, SaslHandshake (v1: the client names a mechanism) and SaslAuthenticate (the
mechanism's tokens, as many rounds as it needs) until it is authenticated; anything else
closes it, as Kafka does. A failed authentication is answered with its error and then
the connection is closed. The mechanisms and the users file are :mod:`logstore.server.auth`.
"""

from __future__ import annotations

import logging

from logstore.server.auth import AuthenticationError, Authenticator, new_authenticator
from logstore.server.context import ServerContext
from logstore.server.protocol.codec import Obj
from logstore.server.protocol.codes import ErrorCode

log = logging.getLogger(__name__)

UNAUTHENTICATED_APIS = frozenset({17, 18, 36})
"""SaslHandshake, ApiVersions, SaslAuthenticate: what a client may send before it is
authenticated."""


class SaslSession:
    """The SASL state of one connection."""

    def __init__(self, ctx: ServerContext, peer: str) -> None:
        self.ctx = ctx
        self.peer = peer
        self.authenticated = not ctx.sasl
        self.user: str | None = None
        self.failed = False
        """Set when an exchange failed: the connection closes once the answer is sent."""
        self._auth: Authenticator | None = None

    def handshake(self, req: Obj) -> Obj:
        enabled = list(self.ctx.config.sasl_mechanisms)
        mechanism = req["mechanism"]
        if self.authenticated or self._auth is not None:  # a second handshake
            self.failed = True
            return {"error_code": ErrorCode.ILLEGAL_SASL_STATE, "mechanisms": enabled}
        if mechanism not in enabled or self.ctx.users is None:
            log.info("%s asked for SASL mechanism %r (enabled: %s)", self.peer, mechanism,
                     ", ".join(enabled) or "none")
            return {"error_code": ErrorCode.UNSUPPORTED_SASL_MECHANISM, "mechanisms": enabled}
        self._auth = new_authenticator(mechanism, self.ctx.users)
        return {"error_code": 0, "mechanisms": enabled}

    async def authenticate(self, req: Obj) -> Obj:
        auth = self._auth
        if auth is None or self.authenticated:
            self.failed = True
            return {"error_code": ErrorCode.ILLEGAL_SASL_STATE, "auth_bytes": b"",
                    "error_message": "SaslAuthenticate without a SaslHandshake first"}
        try:
            # SCRAM derives keys with thousands of hash rounds: not in the event loop
            answer = await self.ctx.run(auth.step, req["auth_bytes"])
        except AuthenticationError as err:
            self.failed = True
            log.warning("authentication of %s with SASL/%s failed: %s", self.peer,
                        auth.mechanism, getattr(err, "detail", None) or err)
            return {"error_code": err.kafka_code, "error_message": str(err), "auth_bytes": b""}
        if auth.done:
            self.authenticated = True
            self.user = auth.user
            log.info("%s authenticated as %r with SASL/%s", self.peer, auth.user, auth.mechanism)
        return {"error_code": 0, "error_message": None, "auth_bytes": answer,
                "session_lifetime_ms": 0}
