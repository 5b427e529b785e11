"""The wire between the language server and the model worker, and where a shared worker listens.

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
   "queue_ms", "steps_after_cancel"}
  {"op": "error", "id": int|null, "message": str}
  {"op": "status", "state": "loading"|"ready"|"busy"|"error", "message": str, "last_ms": float|null,
   "model": str|null, "tokenizer": str|null, "pid": int, "stats": {...}}
  {"op": "progress", "percent": int, "message": str}   while the model loads
A newer "fill" for the same "doc" from the same connection cancels the older one.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import struct
import tempfile

MAX_MESSAGE_BYTES = 64 << 20
_HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The other side sent something that is not a framed JSON object."""


def encode(message: dict) -> bytes:
    body = json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
    if len(body) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(body)} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    return _HEADER.pack(len(body)) + body


def decode(body: bytes) -> dict:
    try:
        message = json.loads(body.decode("utf-8", "surrogatepass"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"not a JSON message: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("a message must be a JSON object")
    return message


async def read_message(reader: asyncio.StreamReader) -> dict | None:
    """The next message, or None at end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {length} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    return decode(body)


async def write_message(writer: asyncio.StreamWriter, message: dict) -> None:
    writer.write(encode(message))
    await writer.drain()


# ---- where a shared worker lives -------------------------------------------------------------

def runtime_dir() -> str:
    """The per-user folder for worker sockets: $XDG_RUNTIME_DIR/diffill, else a temp folder per uid."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return os.path.join(base, "diffill")
    return os.path.join(tempfile.gettempdir(), f"diffill-{os.getuid()}")


def default_socket_path(model: str | None, device: str, dtype: str) -> str:
    """One shared worker per (model, device, dtype) per user."""
    key = json.dumps([model, device, dtype]).encode()
    return os.path.join(runtime_dir(), f"worker-{hashlib.sha256(key).hexdigest()[:12]}.sock")


class UnsafeSocketDir(Exception):
    """The socket's folder could be opened by another user."""


def ensure_private_dir(path: str) -> None:
    """Make sure only this user can reach sockets in `path`.

    The per-user default folder is created 0700 (and put back to 0700 if someone loosened it);
    any other folder must belong to this user and be writable by nobody else.
    """
    ours = os.path.abspath(path) == os.path.abspath(runtime_dir())
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeSocketDir(f"{path} is not a folder; remove it or choose another workerSocket")
    if info.st_uid != os.getuid():
        raise UnsafeSocketDir(f"{path} belongs to another user; choose a workerSocket in a folder of your own")
    if ours and info.st_mode & 0o077:
        os.chmod(path, 0o700)
    elif info.st_mode & 0o022:
        raise UnsafeSocketDir(
            f"{path} can be written by other users, who could replace the worker's socket; "
            f"run `chmod go-w {path}` or choose another workerSocket"
        )
