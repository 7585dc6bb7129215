"""Reversible encoding of asset uuids, data item ids and group names into NATS subject tokens
and Kafka topic names.

One scheme serves both worlds: the characters ``A-Z a-z 0-9 -`` are kept, every other character
is written as ``_HH`` per UTF-8 byte (upper-case hex). An underscore is kept as a literal ``_``
unless what follows would read as an escape, so ordinary names such as ``PROVER3018``, ``Temp``,
``WC1``, ``uns_id`` map to themselves. The output matches ``[A-Za-z0-9_-]+``: legal in a NATS
token (no ``.``, ``*``, ``>`` or whitespace) and in a Kafka topic name.
"""

from __future__ import annotations

_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_HEX = frozenset("0123456789ABCDEF")

#: Kafka rejects topic names longer than this.
MAX_TOPIC_LENGTH = 249


def encode_token(name: str) -> str:
    """Encode ``name`` into a token legal in NATS subjects and Kafka topic names.

    Raises ValueError for an empty name (an empty token is legal in neither).
    """
    if not name:
        raise ValueError("cannot encode an empty name")
    out: list[str] = []
    # Built right to left so that a literal "_" can see the encoded text that follows it.
    for ch in reversed(name):
        if ch in _KEEP:
            out.append(ch)
        elif ch == "_":
            following = "".join(out[-1:-3:-1])[:2]
            if len(following) == 2 and following[0] in _HEX and following[1] in _HEX:
                out.append("_5F")
            else:
                out.append("_")
        else:
            out.append("".join(f"_{b:02X}" for b in ch.encode("utf-8")))
    return "".join(reversed(out))


def decode_token(token: str) -> str:
    """Invert :func:`encode_token`. Raises ValueError for text it could not have produced."""
    if not token:
        raise ValueError("cannot decode an empty token")
    buf = bytearray()
    i = 0
    n = len(token)
    while i < n:
        ch = token[i]
        if ch == "_" and i + 2 < n and token[i + 1] in _HEX and token[i + 2] in _HEX:
            buf.append(int(token[i + 1 : i + 3], 16))
            i += 3
            continue
        if ch not in _KEEP and ch != "_":
            raise ValueError(f"illegal character {ch!r} in encoded token {token!r}")
        buf.extend(ch.encode())
        i += 1
    try:
        return buf.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"encoded token {token!r} does not decode to UTF-8") from None
