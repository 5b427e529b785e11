"""The wire format between the language server and the model worker.

Both processes import this module; it uses the standard library only (no torch).

A message is a JSON object, framed as a 4-byte big-endian length followed by that many bytes of
UTF-8. The same framing runs over a child's stdin/stdout pipes and over a Unix socket.

Client -> worker:
  {"op": "hello", "client": str}                       -> a "status" message
  {"op": "fill", "id": int, "doc": str, "prefix": str, "suffix": str,
   "canvas_length": int|null, "max_steps": int|null, "max_lines": int|null, "language": str|null,
   "seed": int}
                                                       -> "result" or "error" with the same id
  {"op": "cancel", "id": int}                          stop that fill at its next denoising step
  {"op": "status"}                                     -> a "status" message
  {"op": "shutdown"}                                   the worker exits (a shared one too)
Worker -> client:
  {"op": "result", "id", "text", "steps", "ms", "cancelled", "reused_tokens", "encoded_tokens",
   "queue_ms", "steps_after_cancel", "line_confidence": [float]|null (per line of text)}
  {"op": "error", "id": int|null, "message": str}
  {"op": "status", "state": "loading"|"ready"|"busy"|"error", "message": str, "last_ms": float|null,
   "model": str|null, "tokenizer": str|null, "pid": int, "stats": {...},
   "fast_path": {part: verdict}|null (the self-test's, when the fast path was checked),
   "slow_reason": str|null (the last fill was slow because the machine was busy)}
  {"op": "progress", "percent": int, "message": str}   while the model loads
A newer "fill" for the same "doc" from the same connection cancels the older one.
"""
from __future__ import annotations

import asyncio
import json
import struct

VERSION = 1  # both sides say it in hello/status; a worker of another version is asked to stop
MAX_MESSAGE_BYTES = 64 << 20
_HEADER = struct.Struct(">I")


class WireError(Exception):
    """The other side sent something that is not a framed JSON object."""


def encode(message: dict) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if len(body) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict:
    try:
        message = json.loads(body.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError(f"not a JSON message: {exc}") from None
    if not isinstance(message, dict):
        raise WireError("a message must be a JSON object")
    return message


async def read_message(reader: asyncio.StreamReader) -> dict | None:
    """The next message, or None at end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {length} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    return decode(body)


def read_message_blocking(stream) -> dict | None:
    """The next message from a blocking binary stream (a child's stdout pipe), or None at its end."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {length} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    body = stream.read(length)
    return decode(body) if len(body) == length else None


async def write_message(writer: asyncio.StreamWriter, message: dict) -> None:
    writer.write(encode(message))
    await writer.drain()
