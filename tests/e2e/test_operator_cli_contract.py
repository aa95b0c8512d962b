"""`metered-ai` as a subprocess over real HTTP against a small local server that keeps issue 13's documented
contract for the routes other branches are building (extensions, CSV import): the
server checks each request's SigV4 signature with the offline gateway's verifier and its body as the issue
documents it. When those routes are on main, tests/e2e/test_operator_cli.py drives them on the offline stack (it
already exports usage, changes tiers and rotates keys there).

Contract (issue 13, item 2): POST /admin/partners/{id}/extensions {requests, tokens, reason}; POST
/admin/keys/import, a CSV body, per-row results."""

import csv
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from cli.exit_codes import ExitCode
from offline.events import IncomingRequest
from offline.iam_auth import IamCaller, OperatorCredentials, SigV4Verifier
from tests.e2e.test_operator_cli import run_cli

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
STAGE = "live"
CREDENTIALS = OperatorCredentials.generate()

PARTNER = "p_0123456789abcdef0123456789abcdef"
SUMMARY = {
    "partner_id": PARTNER,
    "name": "Ada",
    "email": "ada@example.com",
    "tier": "pro",
    "status": "ACTIVE",
    "api_key_id": "newkeyid01",
    "key_prefix": "AbCd",
    "created_at": "2026-12-01T00:00:00+00:00",
}


def audit(action: str, reason: str) -> dict[str, Any]:
    return {"partner_id": PARTNER, "seq": 1, "at": "2026-12-05T08:00:00+00:00", "actor": CREDENTIALS.user_arn,
            "action": action, "reason": reason, "outcome": "applied", "details": {}, "notified": True}  # fmt: skip


class ContractServer(BaseHTTPRequestHandler):
    """The console's documented routes, answered as documented; every request's signature verified."""

    received: list[dict[str, Any]]  # method, path, query, body as JSON or CSV rows (set per server)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the test reads what it recorded."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = IncomingRequest(
            self.command,
            url.path.removeprefix(f"/{STAGE}"),
            parse_qsl(url.query, keep_blank_values=True),
            list(self.headers.items()),
            body,
            "127.0.0.1",
            self.headers["Host"],
        )
        caller = SigV4Verifier(CREDENTIALS, REGION, lambda: datetime.now(UTC)).verify(request, STAGE)
        if not isinstance(caller, IamCaller):
            self._answer(HTTPStatus.FORBIDDEN, {"message": caller.message})
            return
        query = dict(request.query)
        content_type = self.headers.get("Content-Type", "")
        sent: Any = list(csv.DictReader(io.StringIO(body.decode()))) if content_type == "text/csv" else None
        sent = sent if sent is not None else (json.loads(body) if body else None)
        self.received.append({"method": self.command, "path": request.path, "query": query, "body": sent})
        self._route(request.path, query, sent)

    def _route(self, path: str, query: dict[str, str], body: Any) -> None:
        partner_path = f"/admin/partners/{PARTNER}"
        if path == f"{partner_path}/extensions":
            self._answer(HTTPStatus.OK, {"partner": SUMMARY, "audit": audit("extension", body["reason"])})
        elif path == "/admin/keys/import":
            imported, failed = [], []
            for row, line in enumerate(body, start=1):
                if "@" in line["email"]:
                    imported.append({"row": row, "email": line["email"], "tier": line["tier"], "partner_id": "p_x"})
                else:
                    failed.append({"row": row, "error": {"code": "invalid_email", "message": "not an email"}})
            self._answer(HTTPStatus.OK, {"imported": imported, "failed": failed})
        else:
            self._answer(HTTPStatus.NOT_FOUND, {"error": {"code": "not_found", "message": path}})

    def _answer(self, status: int, body: Any, content_type: str = "application/json") -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (ContractServer,), {"received": received})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/{STAGE}", received
    finally:
        httpd.shutdown()
        httpd.server_close()


def cli(url: str, *args: str) -> Any:
    env = {"AWS_ACCESS_KEY_ID": CREDENTIALS.access_key_id, "AWS_SECRET_ACCESS_KEY": CREDENTIALS.secret_access_key}
    return run_cli("--api-url", url, "--region", REGION, *args, env=env)


def test_grant_sends_the_documented_body(server: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = server

    granted = cli(url, "usage", "grant", PARTNER, "--requests", "500", "--tokens", "100000", "--reason", "launch")

    assert granted.returncode == ExitCode.OK, granted.stderr
    assert f"{PARTNER}: extension applied" in granted.stdout
    assert [request["body"] for request in received] == [{"requests": 500, "tokens": 100000, "reason": "launch"}]


def test_import_sends_csv_batches_and_reports_refused_rows(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    url, received = server
    values = [f"ImportedKeyValue{index:04d}abcdefghijklmnop" for index in range(45)]
    rows = [
        f"{value},P{i},,true,,{'bad-email' if i == 30 else f'p{i}@example.com'},pro" for i, value in enumerate(values)
    ]
    path = tmp_path / "keys.csv"
    path.write_text("key,name,description,enabled,usageplanIds,email,tier\n" + "\n".join(rows) + "\n")

    done = cli(url, "--json", "keys", "import", str(path))

    assert done.returncode == ExitCode.PARTIAL, done.stderr
    assert [len(request["body"]) for request in received] == [20, 20, 5]
    report = json.loads(done.stdout)
    assert [row["row"] for row in report["failed"]] == [31]
    assert len(report["imported"]) == 44
    assert "importing rows" in done.stderr
    assert not any(value in done.stdout + done.stderr for value in values)
