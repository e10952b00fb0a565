"""A small HTTP server on 127.0.0.1 (stdlib `http.server`) for the rating and gallery pages.

An app answers `get(path, query)` with (status, content type, body bytes) and `post(path,
body)` with (status, JSON-able object). The server binds to the loopback address only, serves
one thread per request, and refuses request bodies over a megabyte.
"""

from __future__ import annotations

import json
import mimetypes
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
MAX_BODY = 1 << 20
mimetypes.add_type("image/webp", ".webp")
mimetypes.add_type("text/javascript", ".js")


def json_reply(status: int, obj) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(obj, ensure_ascii=False).encode()


def file_reply(root: Path, rel: str) -> tuple[int, str, bytes]:
    """A file under `root` (never outside it), or 404."""
    root = root.resolve()
    path = (root / rel.lstrip("/")).resolve()
    if not path.is_file() or root not in path.parents:
        return json_reply(404, {"error": f"no such file: {rel}"})
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return 200, kind, path.read_bytes()


class _Handler(BaseHTTPRequestHandler):
    app = None  # set per server by `make_server`

    def log_message(self, format, *args):  # noqa: A002 - the stdlib's name
        pass

    def _send(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind + ("; charset=utf-8" if kind.startswith(
            ("text/", "application/json")) else ""))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 - the stdlib's name
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self._send(*self.app.get(url.path, query))

    def do_POST(self):  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(*json_reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "too large"}))
            return
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send(*json_reply(400, {"error": "the body is not JSON"}))
            return
        status, obj = self.app.post(urlsplit(self.path).path, body)
        self._send(*json_reply(status, obj))


def make_server(app, port: int) -> ThreadingHTTPServer:
    """A server for `app` on 127.0.0.1:`port` (0: a free port; see `server.server_port`)."""
    handler = type("Handler", (_Handler,), {"app": app})
    server = ThreadingHTTPServer((HOST, port), handler)
    server.daemon_threads = True
    return server


def serve_forever(server: ThreadingHTTPServer, what: str) -> None:
    """Print the address and serve until Ctrl-C."""
    print(f"{what} at http://{HOST}:{server.server_port}/ (Ctrl-C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
