"""Messages <-> ZeroMQ multipart frames: [msgpack header, blob, blob, ...].

Decoding trusts nothing: sizes are checked before unpacking, the type tag must be known, every
field must have the declared type, and any violation is a ProtocolError with one clear line.
msgpack is used with strict settings (no ext types, bounded lengths): nothing on the wire can
execute code.
"""
from __future__ import annotations

import dataclasses
import typing

import msgpack

from engine.protocol.messages import (
    MAX_AUDIO_BLOCK_BYTES,
    MAX_FRAMES_BYTES,
    MAX_HEADER_BYTES,
    MAX_PORTRAIT_BYTES,
    MESSAGE_TYPES,
    Message,
)


class ProtocolError(ValueError):
    """A message that cannot be accepted; str(err) is one line for logs and error replies."""


_BLOB_LIMITS = {"portrait": MAX_PORTRAIT_BYTES, "pcm": MAX_AUDIO_BLOCK_BYTES,
                "rgb": MAX_FRAMES_BYTES, "audio": MAX_FRAMES_BYTES}


def _field_kinds(cls: type[Message]) -> dict[str, tuple[type, ...]]:
    hints = typing.get_type_hints(cls)
    kinds: dict[str, tuple[type, ...]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        base = typing.get_origin(hint) or hint
        if base is float:
            kinds[f.name] = (float, int)
        else:
            kinds[f.name] = (base,)
    return kinds


_KINDS = {name: _field_kinds(cls) for name, cls in MESSAGE_TYPES.items()}


def encode(msg: Message) -> list[bytes | memoryview]:
    header = {"type": msg.TYPE}
    blobs: list[bytes | memoryview] = []
    for f in dataclasses.fields(msg):
        value = getattr(msg, f.name)
        if f.name in msg.BLOBS:
            blobs.append(value)
        else:
            header[f.name] = value
    return [msgpack.packb(header, use_bin_type=True), *blobs]


def decode(parts: list[bytes]) -> Message:
    if not parts:
        raise ProtocolError("empty message")
    head = parts[0]
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError(f"message header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(bytes(head), raw=False, strict_map_key=True,
                                 max_str_len=MAX_HEADER_BYTES, max_bin_len=MAX_HEADER_BYTES,
                                 max_array_len=4096, max_map_len=4096, max_ext_len=0)
    except Exception as exc:  # msgpack raises many types for garbage
        raise ProtocolError(f"undecodable message header ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("message header is not a map")
    kind = header.pop("type", None)
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {kind!r}")
    if len(parts) != 1 + len(cls.BLOBS):
        raise ProtocolError(f"{kind} needs {1 + len(cls.BLOBS)} parts, got {len(parts)}")
    kinds = _KINDS[kind]
    values = {}
    for key, value in header.items():
        if key not in kinds or key in cls.BLOBS:
            raise ProtocolError(f"{kind}: unexpected field {key!r}")
        if isinstance(value, bool) and bool not in kinds[key]:
            raise ProtocolError(f"{kind}.{key}: expected {kinds[key][0].__name__}, got bool")
        if not isinstance(value, kinds[key]):
            raise ProtocolError(f"{kind}.{key}: expected {kinds[key][0].__name__}, "
                                f"got {type(value).__name__}")
        values[key] = value
    for name, blob in zip(cls.BLOBS, parts[1:]):
        limit = _BLOB_LIMITS[name]
        if len(blob) > limit:
            raise ProtocolError(f"{kind}.{name} of {len(blob)} bytes exceeds {limit}")
        values[name] = blob
    return cls(**values)
