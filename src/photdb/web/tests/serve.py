"""Run the web app under uvicorn for the tests, recording every request (JSON lines).

``python -m photdb.web.tests.serve --port P --trace FILE --timeout S``: the
database comes from the environment (``PHOTDB_HOME``, ``DB_NAME``) as usual.
The trace middleware stores method, path, query string, form body, status and
content type, so the tests can check what pyvo sends. Small limits (MAXREC,
row caps) so that the tests can reach them.
"""

from __future__ import annotations

import argparse
import json
import threading
from urllib.parse import parse_qsl

import uvicorn

from photdb.web.app import create_app
from photdb.web.service import WebConfig


class Trace:
    def __init__(self, app, path: str):
        self.app, self.path, self.lock = app, path, threading.Lock()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []

        async def recv():
            msg = await receive()
            if msg["type"] == "http.request":
                chunks.append(msg.get("body", b""))
            return msg

        rec = {
            "method": scope["method"],
            "path": scope["path"],
            "query": parse_qsl(scope["query_string"].decode("latin-1")),
        }
        headers = dict((k.decode(), v.decode("latin-1")) for k, v in scope["headers"])
        rec["content_type"] = headers.get("content-type")
        rec["user_agent"] = headers.get("user-agent")

        async def snd(msg):
            if msg["type"] == "http.response.start":
                rec["status"] = msg["status"]
                rec["response_type"] = dict(
                    (k.decode(), v.decode()) for k, v in msg["headers"]
                ).get("content-type")
            await send(msg)

        try:
            await self.app(scope, recv, snd)
        finally:
            body = b"".join(chunks)
            if body and (rec["content_type"] or "").startswith("application/x-www-form"):
                rec["form"] = parse_qsl(body.decode("utf-8", "replace"))
            elif body:
                rec["body_bytes"] = len(body)
            with self.lock, open(self.path, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--trace", required=True)
    ap.add_argument("--timeout", type=float, default=30)
    args = ap.parse_args()
    app = create_app(
        config=WebConfig(
            statement_timeout_s=args.timeout,
            default_maxrec=2000,
            hard_maxrec=20000,
            scs_maxrec=5000,
            cone_rows=500,
        )
    )
    uvicorn.run(
        Trace(app, args.trace),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
