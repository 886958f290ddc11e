"""A package index on loopback for the environment's tests: a real HTTP server that serves
``Index.files`` (path -> bytes) and 404 for anything else; and where the fake uv lives."""

from __future__ import annotations

import http.server

FAKE_UV = "/fake/bin/uv"


class Index(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        data = self.files.get(self.path)
        self.send_response(200 if data is not None else 404)
        self.end_headers()
        self.wfile.write(data or b"")

    def log_message(self, *args):
        pass
