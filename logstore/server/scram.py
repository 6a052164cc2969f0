"""SCRAM-SHA-256 (RFC 5802, RFC 7677) on the server's side, and PLAIN (RFC 4616) against it.

Owns the credential a server keeps for a user (salt, iterations, StoredKey,
ServerKey: never the password), its derivation from a password, the
two-round SCRAM exchange, and PLAIN's check of a password against the same
credential (derive the StoredKey with the user's salt and compare), so one
stored form serves both mechanisms. Knows nothing of Kafka's protocol,
sockets or files: bytes in, bytes out, ``AuthenticationFailed`` on a wrong
password, an unknown user or a malformed message.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Callable

__all__ = [
    "MIN_ITERATIONS",
    "AuthenticationFailed",
    "Credential",
    "PlainExchange",
    "ScramExchange",
]

#: Kafka's lower bound for SCRAM-SHA-256's iteration count (RFC 7677 asks for at least 4096).
MIN_ITERATIONS = 4096
DEFAULT_ITERATIONS = 8192
_SALT_BYTES = 32


class AuthenticationFailed(Exception):
    """The client did not prove it knows the password (the message is safe to send back)."""


@dataclasses.dataclass(frozen=True)
class Credential:
    """What the server stores for one user: enough to verify a proof, not to make one."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def derive(
        cls, password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> Credential:
        """The credential of ``password`` (a fresh random salt unless one is given)."""
        if iterations < MIN_ITERATIONS:
            raise ValueError(f"iterations {iterations} is below the minimum {MIN_ITERATIONS}")
        salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
        salted = _salted_password(password, salt, iterations)
        client_key = _hmac(salted, b"Client Key")
        return cls(
            salt=salt,
            iterations=iterations,
            stored_key=hashlib.sha256(client_key).digest(),
            server_key=_hmac(salted, b"Server Key"),
        )

    def verify_password(self, password: str) -> bool:
        """Whether ``password`` is this credential's (PLAIN's check; constant-time compare)."""
        salted = _salted_password(password, self.salt, self.iterations)
        stored = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
        return hmac.compare_digest(stored, self.stored_key)


Lookup = Callable[[str], "Credential | None"]


class PlainExchange:
    """RFC 4616: one message ``[authzid] NUL authcid NUL passwd``, one empty answer."""

    def __init__(self, lookup: Lookup) -> None:
        self._lookup = lookup
        self.done = False
        #: The authenticated user, once ``done``.
        self.user: str | None = None

    def step(self, message: bytes) -> bytes:
        """Check the one message; ``b""`` when the password is right.

        Raises:
            AuthenticationFailed: malformed message, unknown user, wrong password,
                or an authorization identity other than the user's own.
        """
        if self.done:
            raise AuthenticationFailed("PLAIN: the exchange is already complete")
        parts = message.split(b"\0")
        if len(parts) != 3:
            raise AuthenticationFailed("PLAIN: expected [authzid] NUL user NUL password")
        try:
            authzid, user, password = (p.decode("utf-8") for p in parts)
        except UnicodeDecodeError:
            raise AuthenticationFailed("PLAIN: the message is not UTF-8") from None
        if not user or not password:
            raise AuthenticationFailed("PLAIN: empty user name or password")
        if authzid and authzid != user:
            raise AuthenticationFailed("PLAIN: authorization identity must be the user's own")
        credential = self._lookup(user)
        if credential is None or not credential.verify_password(password):
            raise AuthenticationFailed(_INVALID)
        self.done, self.user = True, user
        return b""


_INVALID = "invalid user name or password"


class ScramExchange:
    """The server's side of one SCRAM-SHA-256 exchange: ``step`` twice.

    An unknown user is not told apart from a wrong password: it gets a
    made-up salt (stable per name, so asking twice looks the same) and fails
    at the proof, as a wrong password does.
    """

    def __init__(self, lookup: Lookup, *, nonce: str | None = None) -> None:
        self._lookup = lookup
        self._server_nonce = nonce if nonce is not None else secrets.token_urlsafe(24)
        self._round = 0
        self._credential: Credential | None = None
        self._user = ""
        self._known = False
        self._nonce = ""
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self.done = False
        #: The authenticated user, once ``done``.
        self.user: str | None = None

    def step(self, message: bytes) -> bytes:
        """The answer to the client's next message: server-first, then server-final.

        Raises:
            AuthenticationFailed: malformed message, wrong nonce, channel binding asked
                for, unknown user or wrong password.
        """
        try:
            text = message.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed("SCRAM: the message is not UTF-8") from None
        self._round += 1
        if self._round == 1:
            return self._first(text).encode()
        if self._round == 2:
            return self._final(text).encode()
        raise AuthenticationFailed("SCRAM: the exchange is already complete")

    def _first(self, text: str) -> str:
        # gs2-header: "n," or "y," (no channel binding), then "[a=authzid],"
        flag, _, rest = text.partition(",")
        authzid, sep, bare = rest.partition(",")
        if flag not in ("n", "y") or not sep:
            raise AuthenticationFailed("SCRAM: channel binding is not supported, or bad gs2 header")
        if authzid and not authzid.startswith("a="):
            raise AuthenticationFailed("SCRAM: bad authorization identity")
        attrs = _attributes(bare)
        if "m" in attrs:
            raise AuthenticationFailed("SCRAM: mandatory extensions are not supported")
        user = _unescape(attrs.get("n", ""))
        nonce = attrs.get("r", "")
        if not user or not nonce or not nonce.isprintable() or "," in nonce:
            raise AuthenticationFailed("SCRAM: client-first message needs n= and r=")
        if authzid and _unescape(authzid[2:]) != user:
            raise AuthenticationFailed("SCRAM: authorization identity must be the user's own")
        credential = self._lookup(user)
        self._known = credential is not None
        self._credential = credential or _decoy(user)
        self._user = user
        self._gs2_header = f"{flag},{authzid},"
        self._client_first_bare = bare
        self._nonce = nonce + self._server_nonce
        salt = base64.b64encode(self._credential.salt).decode()
        self._server_first = f"r={self._nonce},s={salt},i={self._credential.iterations}"
        return self._server_first

    def _final(self, text: str) -> str:
        without_proof, sep, proof_attr = text.rpartition(",p=")
        if not sep:
            raise AuthenticationFailed("SCRAM: client-final message has no proof")
        attrs = _attributes(without_proof)
        try:
            binding = base64.b64decode(attrs.get("c", ""), validate=True)
            proof = base64.b64decode(proof_attr, validate=True)
        except binascii.Error:
            raise AuthenticationFailed("SCRAM: bad base64 in client-final message") from None
        if binding != self._gs2_header.encode():
            raise AuthenticationFailed("SCRAM: channel binding does not match the gs2 header")
        if attrs.get("r") != self._nonce:
            raise AuthenticationFailed("SCRAM: the nonce does not match")
        credential = self._credential
        assert credential is not None
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        signature = _hmac(credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise AuthenticationFailed(_INVALID)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        computed = hashlib.sha256(client_key).digest()
        if not (hmac.compare_digest(computed, credential.stored_key) and self._known):
            raise AuthenticationFailed(_INVALID)
        self.done, self.user = True, self._user
        server_signature = _hmac(credential.server_key, auth_message)
        return "v=" + base64.b64encode(server_signature).decode()


def _attributes(text: str) -> dict[str, str]:
    """``a=1,b=2`` as a dict; a part without ``=`` or a repeated key is malformed.

    Keys longer than one letter (Kafka's extensions, such as ``tokenauth``) are kept and ignored.
    """
    out: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or key in out:
            raise AuthenticationFailed(f"SCRAM: malformed attribute {part[:20]!r}")
        out[key] = value
    return out


def _unescape(name: str) -> str:
    """RFC 5802's saslname: ``=2C`` is a comma, ``=3D`` an equals sign, no other ``=``."""
    out = name.replace("=2C", ",").replace("=3D", "=")
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise AuthenticationFailed("SCRAM: bad escape in the user name")
    return out


_DECOY_KEY = secrets.token_bytes(32)


def _decoy(user: str) -> Credential:
    """A credential nobody has a password for, with a salt stable per name in this process."""
    salt = _hmac(_DECOY_KEY, user.encode())
    unreachable = secrets.token_bytes(32)
    return Credential(salt, DEFAULT_ITERATIONS, unreachable, unreachable)


def _salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    # RFC 7677 wants SASLprep of the password; passwords here are taken as given (NFC
    # is the caller's business), as Kafka's Java client and librdkafka do too.
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()
