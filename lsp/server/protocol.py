"""pygls' LSP protocol with what diffill changes about it, and the stdio loop over our own reader.

- Documents live in our DocumentStore, not pygls' workspace: the document notifications call the
  handler directly. (pygls runs generator handlers with a Future kept in `_request_futures` under a
  fresh id that nothing ever removes: ~2 KB per didOpen/didChange/didClose, forever.) Any other
  Future pygls files under an id is removed once it is done, so nothing grows with traffic.
- A request whose params do not parse is answered with InvalidParams instead of silence.
- The lifecycle as LSP says: a request before `initialize` gets ServerNotInitialized (-32002), a
  notification then is dropped; a second `initialize` and any request after `shutdown` get
  InvalidRequest (-32600); `exit` ends the process with 0 after `shutdown`, 1 without.
- stdio is read by lsp/server/framing.py (forgiving headers, capped sizes, recovery from a wrong
  Content-Length) instead of pygls' reader.
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.io_ import StdoutWriter
from pygls.protocol import LanguageServerProtocol, lsp_method

from diffill.lsp.server import framing

log = logging.getLogger("diffill")

SERVER_NOT_INITIALIZED = -32002
INVALID_REQUEST = -32600


class DiffillProtocol(LanguageServerProtocol):
    def __init__(self, server, converter):
        super().__init__(server, converter)
        self.initialize_seen = False
        self.exit_code: int | None = None

    # -- documents: plain calls, no generator and no Future kept per notification --
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            handler(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            handler(params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params):
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            handler(params)

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args):
        self.exit_code = 0 if self._shutdown else 1
        yield from super().lsp_exit(*args)

    def _execute_handler(self, msg_id, handler, callback, args=None, kwargs=None):
        super()._execute_handler(msg_id, handler, callback, args, kwargs)
        future = self._request_futures.get(msg_id)
        if future is not None:
            future.add_done_callback(lambda f, key=msg_id: self._forget_future(key, f))

    def _forget_future(self, msg_id, future) -> None:
        if self._request_futures.get(msg_id) is future:
            del self._request_futures[msg_id]

    # -- params that do not parse --
    def structure_message(self, data):
        try:
            return super().structure_message(data)
        except Exception as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                error = exc if isinstance(exc, JsonRpcInvalidParams) else JsonRpcInvalidParams()
                self._send_response(data["id"], None, error.to_response_error())
            raise

    # -- the lifecycle --
    def handle_message(self, message):
        method = getattr(message, "method", None)
        if method is None or getattr(message, "jsonrpc", None) != self.VERSION:
            return super().handle_message(message)  # responses, and what pygls itself ignores
        request = hasattr(message, "id")
        if method == types.EXIT:
            return super().handle_message(message)
        if self._shutdown:
            if request:
                self._refuse(message.id, INVALID_REQUEST, f"the server is shutting down; {method} is not served")
            return
        if method == types.INITIALIZE:
            if self.initialize_seen:
                if request:
                    self._refuse(message.id, INVALID_REQUEST, "the server is already initialized")
                return
            self.initialize_seen = True
        elif not self.initialize_seen:
            if request:
                self._refuse(message.id, SERVER_NOT_INITIALIZED,
                             f"the server is not initialized yet; {method} needs initialize first")
            return
        return super().handle_message(message)

    def _refuse(self, msg_id, code: int, text: str) -> None:
        self._send_response(msg_id, None, types.ResponseError(code=code, message=text))


def serve_stdio(server, stdin=None, stdout=None) -> int:
    """Serve LSP over stdin/stdout until `exit` or the end of input; the process's exit status."""
    server._stop_event = threading.Event()
    server.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
    source = framing.fd_source((stdin or sys.stdin.buffer).fileno())
    reader = framing.MessageReader(source, on_problem=lambda problem: log.error("%s", problem))
    code = None
    try:
        asyncio.run(framing.run(server._stop_event, reader, server.protocol, server.report_server_error))
    except SystemExit as exc:  # `exit`: pygls calls sys.exit with 0 after shutdown, 1 without
        code = exc.code if isinstance(exc.code, int) else server.protocol.exit_code
    except BrokenPipeError:
        log.error("the connection to the client is lost; shutting down")
        code = 1
    except KeyboardInterrupt:
        code = 130
    finally:
        server.shutdown()
    if code is None:  # the client closed the stream: fine after shutdown, not before
        code = 0 if server.protocol._shutdown else 1
    return code
