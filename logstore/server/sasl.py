"""SASL over Kafka's protocol: SaslHandshake (API 17) and SaslAuthenticate (API 36).

Owns one connection's SASL state (``SaslSession``: no mechanism yet, a
mechanism chosen and its exchange under way, authenticated), what may be
asked before authentication (ApiVersions, SaslHandshake, SaslAuthenticate;
anything else closes the connection, as Kafka does), the answers to a
mechanism not enabled (UNSUPPORTED_SASL_MECHANISM with the enabled list) and
to a failed exchange (SASL_AUTHENTICATION_FAILED with a message, then the
connection closed), and the raw tokens that follow a v0 handshake. The
mechanisms themselves are ``scram``'s; this module knows Kafka's framing of
them, not their cryptography.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from . import codec
from .codec import ErrorCode, Header
from .scram import AuthenticationFailed, Credential, PlainExchange, ScramExchange
from .state import ServerState

__all__ = [
    "MECHANISMS",
    "SERVED_VERSIONS",
    "SaslSession",
    "SaslSettings",
    "handle_sasl_authenticate",
    "handle_sasl_handshake",
    "parse_mechanisms",
]

logger = logging.getLogger(__name__)

SASL_HANDSHAKE_KEY = 17
SASL_AUTHENTICATE_KEY = 36
PLAIN = "PLAIN"
SCRAM_SHA_256 = "SCRAM-SHA-256"
MECHANISMS = (PLAIN, SCRAM_SHA_256)
#: How long a failed authentication waits before its answer (Kafka's default: 100 ms).
FAILED_AUTHENTICATION_DELAY_S = 0.1

Dispatch = Callable[[ServerState, Header, bytes], Awaitable["codec.Frame | None"]]
Exchange = PlainExchange | ScramExchange


@dataclasses.dataclass(frozen=True)
class SaslSettings:
    """A listener's SASL: the mechanisms it offers and the users' credentials."""

    users: Mapping[str, Credential]
    mechanisms: tuple[str, ...] = MECHANISMS

    def __post_init__(self) -> None:
        unknown = [m for m in self.mechanisms if m not in MECHANISMS]
        if unknown or not self.mechanisms:
            raise ValueError(
                f"SASL mechanisms {list(self.mechanisms)}: choose from {', '.join(MECHANISMS)}"
            )

    def exchange(self, mechanism: str) -> Exchange:
        if mechanism == PLAIN:
            return PlainExchange(self.users.get)
        return ScramExchange(self.users.get)


def parse_mechanisms(value: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``"PLAIN,SCRAM-SHA-256"`` or a sequence of names as a tuple (names upper-cased)."""
    names = value.split(",") if isinstance(value, str) else list(value)
    return tuple(n.strip().upper() for n in names if n.strip())


class SaslSession:
    """One connection's way through SASL; ``serve`` every frame until ``authenticated``."""

    def __init__(self, settings: SaslSettings, dispatch: Dispatch, peer: object) -> None:
        self._settings = settings
        self._dispatch = dispatch
        self._peer = peer
        self._exchange: Exchange | None = None
        self._mechanism = ""
        self._raw_tokens = False  # after a v0 handshake: tokens without a Kafka header
        self.authenticated = False
        #: The authenticated user, once ``authenticated``.
        self.user: str | None = None

    async def serve(self, state: ServerState, frame: bytes) -> tuple[codec.Frame | None, bool]:
        """The answer to a frame before authentication, and whether to close after it.

        Raises:
            ProtocolError: the frame cannot be parsed.
        """
        if self._raw_tokens:
            return await self._raw_token(frame)
        header = codec.decode_header(frame)
        key = header.api_key
        if key == codec.API_VERSIONS_KEY:
            return await self._dispatch(state, header, frame), False
        if key not in (SASL_HANDSHAKE_KEY, SASL_AUTHENTICATE_KEY):
            logger.warning(
                "%s: API %d before SASL authentication: connection closed", self._peer, key
            )
            return None, True
        low, high = SERVED_VERSIONS[key]
        if not low <= header.api_version <= high:
            # A version not served: the dispatch's UNSUPPORTED_VERSION answer, then close.
            return await self._dispatch(state, header, frame), True
        request = codec.decode_request(header, frame)
        if key == SASL_HANDSHAKE_KEY:
            body, close = self._handshake(header, request)
        else:
            body, close = await self._authenticate(request)
        return codec.encode_response(key, header.api_version, header.correlation_id, body), close

    def _handshake(self, header: Header, request: Any) -> tuple[dict[str, Any], bool]:
        enabled = list(self._settings.mechanisms)
        if self._exchange is not None:
            logger.warning("%s: a second SaslHandshake: connection closed", self._peer)
            return {"error_code": ErrorCode.illegal_sasl_state, "mechanisms": enabled}, True
        mechanism = request.mechanism
        if mechanism not in enabled:
            logger.warning(
                "%s: SASL mechanism %r not enabled (%s): connection closed",
                self._peer,
                mechanism,
                ", ".join(enabled),
            )
            return {"error_code": ErrorCode.unsupported_sasl_mechanism, "mechanisms": enabled}, True
        self._mechanism = mechanism
        self._exchange = self._settings.exchange(mechanism)
        self._raw_tokens = header.api_version == 0
        return {"error_code": ErrorCode.none, "mechanisms": enabled}, False

    async def _authenticate(self, request: Any) -> tuple[dict[str, Any], bool]:
        if self._exchange is None:
            logger.warning(
                "%s: SaslAuthenticate before SaslHandshake: connection closed", self._peer
            )
            return {
                "error_code": ErrorCode.illegal_sasl_state,
                "error_message": "SaslAuthenticate before SaslHandshake",
            }, True
        try:
            token = await self._step(request.auth_bytes)
        except AuthenticationFailed as exc:
            message = f"Authentication failed with SASL mechanism {self._mechanism}: {exc}"
            return {
                "error_code": ErrorCode.sasl_authentication_failed,
                "error_message": message,
            }, True
        return {"error_code": ErrorCode.none, "error_message": None, "auth_bytes": token}, False

    async def _raw_token(self, frame: bytes) -> tuple[bytes | None, bool]:
        """A v0 handshake's token: answered as a bare size-prefixed token; a failure closes."""
        try:
            token = await self._step(frame)
        except AuthenticationFailed:
            return None, True
        if self.authenticated:
            self._raw_tokens = False
        return struct.pack(">i", len(token)) + token, False

    async def _step(self, token: bytes) -> bytes:
        """One step of the exchange, off the event loop (PLAIN runs PBKDF2: milliseconds).

        A failure is answered only after ``FAILED_AUTHENTICATION_DELAY_S``, as Kafka's
        ``connection.failed.authentication.delay.ms`` does, to slow down guessing.
        """
        exchange = self._exchange
        assert exchange is not None
        try:
            answer = await asyncio.to_thread(exchange.step, token)
        except AuthenticationFailed as exc:
            logger.warning(
                "%s: SASL %s authentication failed: %s: connection closed",
                self._peer,
                self._mechanism,
                exc,
            )
            await asyncio.sleep(FAILED_AUTHENTICATION_DELAY_S)
            raise
        if exchange.done:
            self.authenticated, self.user = True, exchange.user
            logger.info("%s: authenticated as %r with %s", self._peer, self.user, self._mechanism)
        return answer


#: The versions of the two SASL APIs served (the table of ``apis`` advertises the same).
SERVED_VERSIONS = {SASL_HANDSHAKE_KEY: (0, 1), SASL_AUTHENTICATE_KEY: (0, 2)}


async def handle_sasl_handshake(state: ServerState, header: Header, request: Any) -> dict[str, Any]:
    """A handshake outside a connection's SASL phase: none is due (SASL off, or done)."""
    if state.sasl_mechanisms:
        return {"error_code": ErrorCode.illegal_sasl_state, "mechanisms": state.sasl_mechanisms}
    return {"error_code": ErrorCode.unsupported_sasl_mechanism, "mechanisms": []}


async def handle_sasl_authenticate(
    state: ServerState, header: Header, request: Any
) -> dict[str, Any]:
    """An authentication outside a connection's SASL phase (SASL off, or already done)."""
    why = "already authenticated" if state.sasl_mechanisms else "SASL is not enabled"
    return {"error_code": ErrorCode.illegal_sasl_state, "error_message": why}
