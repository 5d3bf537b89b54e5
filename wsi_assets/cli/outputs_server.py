"""Serve each user's result files read-only over HTTP, for one-click report links in the UI.

    python -m wsi_assets.cli.outputs_server --root user_files [--host 127.0.0.1] [--port 3001] [--user-header X-Forwarded-User]

`scripts/run.sh` starts it beside Dagster and sets WSI_OUTPUTS_URL. Like the local Dagster UI it
has no login of its own: keep it on 127.0.0.1, or behind the authenticating proxy with
`--user-header` naming the header the proxy sets, so each user reaches only their own outputs.
"""

from __future__ import annotations

import argparse
import mimetypes
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from wsi_assets.results.served_outputs import served_file


class OutputsHandler(BaseHTTPRequestHandler):
    server_version = "wsi-assets-outputs"

    def __init__(self, *args, root: Path, user_header: str | None, **kwargs):
        self.root, self.user_header = root, user_header
        super().__init__(*args, **kwargs)

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path, user = served_file(self.root, self.path)
        if self.user_header and (user is None or self.headers.get(self.user_header) != user):
            self.send_error(403, "these results are not yours")
            return
        if path is None:
            self.send_error(404, "no such result file")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass


def make_server(root: Path, host: str, port: int, user_header: str | None = None) -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), partial(OutputsHandler, root=Path(root).resolve(), user_header=user_header))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="the upload root (WSI_USER_FILES)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001)
    parser.add_argument("--user-header", help="serve a user's files only to requests carrying their name in this header")
    args = parser.parse_args(argv)
    server = make_server(args.root, args.host, args.port, args.user_header)
    print(f"outputs served at http://{args.host}:{server.server_port}/<user>/outputs/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
