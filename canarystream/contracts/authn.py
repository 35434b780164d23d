"""Who sent a message on the deployments topic: a principal's Ed25519 signature over its bytes.

Announcements and control events steer production traffic, so each carries, in two Kafka
headers, the name of the principal who sent it and that principal's signature over the exact
message value (the bytes as produced, not a re-encoding):

* ``canarystream-principal``: the principal's name (UTF-8);
* ``canarystream-signature``: ``ed25519:<base64>`` over the message value.

A principal's public key is listed in the access file; whoever holds the private key speaks
as that principal. Replay files carry the same pair in an envelope line (see the README).

>>> from canarystream.contracts.signing import Signer, generate_ed25519_key
>>> private, public = generate_ed25519_key()
>>> headers = signed_headers(Signer.ed25519(private), "deploy-bot", b'{"type":"x"}')
>>> message_credentials(headers)[0]
'deploy-bot'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from canarystream.contracts.signing import SIGNATURE_HEADER, Signer

__all__ = [
    "PRINCIPAL_HEADER",
    "SIGNATURE_HEADER",
    "message_credentials",
    "signed_headers",
]

PRINCIPAL_HEADER = "canarystream-principal"


def signed_headers(signer: Signer, principal: str, value: bytes) -> list[tuple[str, bytes]]:
    """The Kafka headers that authenticate ``value`` as sent by ``principal``."""
    return [
        (PRINCIPAL_HEADER, principal.encode("utf-8")),
        (SIGNATURE_HEADER, signer.sign(value).encode("ascii")),
    ]


def message_credentials(
    headers: Iterable[tuple[str, bytes | None]] | Sequence[tuple[str, bytes | None]] | None,
) -> tuple[str | None, str | None]:
    """The (principal, signature) a message claims, from its headers; None where absent.

    A header repeated, or not valid UTF-8/ASCII, makes that credential absent: a message must
    not be able to present two identities and let the reader pick one.
    """
    principal: str | None = None
    signature: str | None = None
    seen: dict[str, int] = {}
    for key, raw in headers or ():
        if key not in (PRINCIPAL_HEADER, SIGNATURE_HEADER):
            continue
        seen[key] = seen.get(key, 0) + 1
        try:
            text = raw.decode("utf-8") if raw is not None else None
        except UnicodeDecodeError:
            text = None
        if key == PRINCIPAL_HEADER:
            principal = text
        else:
            signature = text
    if seen.get(PRINCIPAL_HEADER, 0) > 1:
        principal = None
    if seen.get(SIGNATURE_HEADER, 0) > 1:
        signature = None
    return principal, signature
