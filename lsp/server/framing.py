"""The LSP base protocol as the server reads it: `Content-Length` framed JSON, read forgivingly.

pygls' own reader wants exactly `Content-Length: N\\r\\n` and trusts N, so one badly framed message
(a lower-case header name, no space after the colon, a length a few bytes off) leaves it reading
bodies as headers for good, and a huge N makes it allocate N bytes. This reader:

- takes header names in any case, with or without spaces around the colon, lines ending in
  \\r\\n or \\n, and ignores other headers (Content-Type);
- refuses a Content-Length over MAX_MESSAGE_BYTES (nothing is allocated for it) and skips ahead to
  the next header;
- recovers from a wrong length: a body that is a complete JSON object followed by the start of
  the next header (the length was too long) gives the object and puts the rest back; a body that is
  not JSON (too short) is dropped and reading resumes at the next `Content-Length` header, even one
  glued to the leftover bytes; a body that never completes but already holds a whole JSON object
  after a pause (too long, and nothing follows) is taken as it is;
- reports each of these once, clearly, on stderr, and answers a dropped message with a JSON-RPC
  parse error (-32700), so the server never goes deaf or hangs silently.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import threading

MAX_MESSAGE_BYTES = 128 << 20   # no editor sends more; a 10 MB document is ~10-60 MB of JSON
MAX_HEADER_LINE = 8192          # a header line longer than this is garbage, skipped in bounded memory
STALL_S = 0.5                   # a body that stops arriving for this long is checked for a too-long length
CHUNK = 1 << 16

log = logging.getLogger("diffill")
_LENGTH = re.compile(rb"content-length[ \t]*:[ \t]*([0-9]+)", re.IGNORECASE)
_HEADER_NAME = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*[ \t]*:")
_decoder = json.JSONDecoder()


class Problem(str):
    """What went wrong with the framing, said for a person (the server logs it)."""


class MessageReader:
    """Message bodies out of a byte stream; `read_chunk()` gives the next bytes, b"" at the end."""

    def __init__(self, read_chunk, max_bytes: int = MAX_MESSAGE_BYTES, stall_s: float = STALL_S,
                 on_problem=None):
        self._read_chunk = read_chunk
        self.max_bytes = max_bytes
        self.stall_s = stall_s
        self.on_problem = on_problem or (lambda problem: log.error("%s", problem))
        self._buf = bytearray()
        self._eof = False

    # -- bytes --
    async def _more(self, timeout: float | None = None) -> bool:
        """Read more bytes into the buffer; False at the end (or, with a timeout, when none came)."""
        if self._eof:
            return False
        if timeout is None:
            chunk = await self._read_chunk()
        else:
            try:
                chunk = await asyncio.wait_for(self._read_chunk(), timeout)
            except asyncio.TimeoutError:
                return False
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    async def _line(self) -> bytes | None:
        """The next line (with its \\n), or None at the end. Overlong lines are cut down to their
        last MAX_HEADER_LINE bytes (a header glued to a long run of garbage keeps its tail)."""
        start = 0
        dropped = 0
        while True:
            i = self._buf.find(b"\n", start)
            if i != -1:
                line = bytes(self._buf[: i + 1])
                del self._buf[: i + 1]
                if dropped:
                    self.on_problem(Problem(f"skipped {dropped} bytes that are not a header"))
                return line
            if len(self._buf) > MAX_HEADER_LINE:
                cut = len(self._buf) - MAX_HEADER_LINE
                dropped += cut
                del self._buf[:cut]
            start = len(self._buf)
            if not await self._more():
                return None

    # -- messages --
    async def next_body(self) -> bytes | None:
        """The body of the next message, or None at the end of the stream."""
        while True:
            length = await self._headers()
            if length is None:
                return None
            if length > self.max_bytes:
                self.on_problem(Problem(
                    f"a message of {length} bytes exceeds the {self.max_bytes}-byte limit; it is skipped "
                    f"and reading resumes at the next header"))
                continue
            body = await self._body(length)
            if body is None:
                return None
            return body

    async def _headers(self) -> int | None:
        length: int | None = None
        skipped = 0
        while True:
            line = await self._line()
            if line is None:
                return None
            if not line.strip():
                if length is not None:
                    if skipped:
                        self.on_problem(Problem(f"skipped {skipped} bytes before a message's header"))
                    return length
                continue  # a stray blank line between messages
            match = _LENGTH.search(line)
            if match is not None:
                skipped += match.start()
                digits = match.group(1)
                length = int(digits) if len(digits) <= 18 else self.max_bytes + 1
            elif _HEADER_NAME.match(line) is None:
                skipped += len(line)  # leftovers of a body whose length was too short
                if length is not None:
                    # a header, then garbage instead of the blank line: start over at the next header
                    length = None

    async def _body(self, length: int) -> bytes | None:
        while len(self._buf) < length:
            if self._eof:
                whole = _whole_object(self._buf)  # the stream ended: a whole object is still a message
                if whole is None:
                    return None
                self.on_problem(Problem(f"Content-Length {length} is longer than the last message "
                                        f"({whole} bytes); the message is read as it is"))
                body = bytes(self._buf[:whole])
                del self._buf[:whole]
                return body
            got = await self._more(timeout=self.stall_s if self._buf else None)
            if not got and not self._eof:
                whole = _whole_object(self._buf)
                if whole is not None:
                    # nothing more is coming, and what came is a whole message: the length was too long
                    self.on_problem(Problem(
                        f"Content-Length {length} is longer than its message ({whole} bytes); "
                        f"the message is read as it is"))
                    body = bytes(self._buf[:whole])
                    del self._buf[:whole]
                    return body
                await self._more()  # keep waiting for the rest
        body = bytes(self._buf[:length])
        del self._buf[:length]
        if not body.rstrip().endswith(b"}"):
            # perhaps the length was too long and the next message's header began inside this body
            return self.salvage(body) or body
        return body

    def salvage(self, body: bytes) -> bytes | None:
        """A body that did not parse but is a whole JSON object followed by the start of the next
        message (a length too long): the object, with the rest put back to be read next."""
        whole = _whole_object(body)
        if whole is None or not _looks_like_header(body[whole:]):
            return None
        self.on_problem(Problem(f"Content-Length {len(body)} is {len(body) - whole} bytes longer than its "
                                f"message; the next message is read from where it really starts"))
        self._buf[:0] = body[whole:]
        return body[:whole]

    def unreadable(self, body: bytes, error: Exception) -> None:
        """Report a body that is not JSON (a length too short, or a broken client)."""
        self.on_problem(Problem(f"a message of {len(body)} bytes is not valid JSON ({error}); it is skipped "
                                f"and reading resumes at the next header"))


def _whole_object(data) -> int | None:
    """The length of a complete JSON object at the start of `data` followed by nothing but
    whitespace or the start of a header, else None."""
    try:
        text = bytes(data).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        text = bytes(data[: exc.start]).decode("utf-8", "surrogatepass")
    stripped = text.lstrip()
    if not stripped.startswith("{"):
        return None
    try:
        _, end = _decoder.raw_decode(stripped)
    except ValueError:
        return None
    consumed = len(text) - len(stripped) + end
    return len(text[:consumed].encode("utf-8", "surrogatepass"))


_HEADERISH = re.compile(rb"[A-Za-z0-9:;,=/._+ \t\r\n-]*")


def _looks_like_header(rest: bytes) -> bool:
    """Whether bytes after a whole object are (the start of) the next message's header lines,
    perhaps running into its body."""
    head = rest.split(b"{", 1)[0]
    return _HEADERISH.fullmatch(head) is not None and (len(head) == len(rest) or b"\n\n" in head.replace(b"\r", b""))


# ---- sources ---------------------------------------------------------------------------------

def stream_source(reader: asyncio.StreamReader):
    async def read_chunk() -> bytes:
        return await reader.read(CHUNK)
    return read_chunk


def fd_source(fd: int, queue_size: int = 16):
    """Chunks of a file descriptor, read by a daemon thread (works for pipes, files and ttys alike,
    never blocks the event loop or the exit); a bounded queue keeps the reading in step."""
    state: dict = {}

    async def read_chunk() -> bytes:
        if "queue" not in state:
            loop = asyncio.get_running_loop()
            queue = state["queue"] = asyncio.Queue(queue_size)

            def pump():
                while True:
                    try:
                        chunk = os.read(fd, CHUNK)
                    except OSError:
                        chunk = b""
                    try:
                        asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
                    except Exception:
                        return  # the loop is gone
                    if not chunk:
                        return

            threading.Thread(target=pump, name="lsp-stdin", daemon=True).start()
        return await state["queue"].get()

    return read_chunk


# ---- the loop ----------------------------------------------------------------------------------

async def run(stop_event: threading.Event, reader: MessageReader, protocol, error_handler=None) -> None:
    """pygls' run_async, over our reader: parse each body and hand it to the protocol."""
    while not stop_event.is_set():
        body = await reader.next_body()
        if body is None:
            break
        try:
            try:
                message = json.loads(body, object_hook=protocol.structure_message)
            except ValueError:  # JSONDecodeError, UnicodeDecodeError
                salvaged = reader.salvage(body)
                if salvaged is None:
                    raise
                message = json.loads(salvaged, object_hook=protocol.structure_message)
        except ValueError as exc:
            reader.unreadable(body, exc)
            _parse_error(protocol, f"the message is not valid JSON: {exc}")
            continue
        except Exception as exc:
            log.error("cannot read a message: %s", exc)
            if error_handler:
                error_handler(exc, type(exc))
            continue
        try:
            protocol.handle_message(message)
        except Exception as exc:
            log.exception("Unable to handle message")
            if error_handler:
                error_handler(exc, type(exc))


def _parse_error(protocol, message: str) -> None:
    try:
        protocol._send_data({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": message}})
    except Exception:
        pass
