"""Calls to the operator console: each request SigV4-signed by botocore (service `execute-api`, the stack's
region) and sent through a Transport, which tests replace with a fake."""

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

JSON_TYPE = "application/json"
CSV_TYPE = "text/csv"
SERVICE = "execute-api"
USER_AGENT = "metered-ai-cli"
CHUNK_BYTES = 64 * 1024
DEFAULT_TIMEOUT_SECONDS = 60.0

# Bytes read so far, and the total when the answer said (Content-Length).
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class ApiError(Exception):
    """The API answered 4xx or 5xx. `code` and `message` come from the control plane's error shape
    (`{"error": {"code", "message", "details"?}}`) or, for API Gateway's own refusals, `{"message"}` and
    `x-amzn-ErrorType`."""

    def __init__(self, reply: Reply) -> None:
        self.status = reply.status
        self.headers = reply.headers
        try:
            self.body: Any = reply.json()
        except ValueError:
            self.body = reply.body.decode("utf-8", errors="replace")
        error = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(error, dict):
            self.code = str(error.get("code", ""))
            self.message = str(error.get("message", ""))
            self.details: Any = error.get("details")
        else:
            gateway_type = _header(reply.headers, "x-amzn-ErrorType") or ""
            self.code = gateway_type.split(":")[0] or f"http_{reply.status}"
            self.message = str(self.body.get("message", "")) if isinstance(self.body, dict) else str(self.body)
            self.details = None
        super().__init__(f"{self.status} {self.code}: {self.message}")


class TransportError(Exception):
    """No answer: the connection failed or timed out."""


class Transport(Protocol):
    def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, progress: Progress | None
    ) -> Reply: ...


@dataclass(frozen=True)
class UrllibTransport:
    """Plain HTTP(S) with the standard library; the answer read in chunks so downloads can show progress."""

    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def __call__(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None, progress: Progress | None
    ) -> Reply:
        request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - http(s) only
                answer_headers = dict(response.headers.items())
                return Reply(response.status, answer_headers, _read(response, answer_headers, progress))
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, dict(exc.headers.items()), exc.read())
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransportError(f"no answer from {urllib.parse.urlsplit(url).netloc}: {reason}") from None


def _read(response: Any, headers: Mapping[str, str], progress: Progress | None) -> bytes:
    length = _header(headers, "Content-Length")
    total = int(length) if length and length.isdigit() else None
    chunks: list[bytes] = []
    done = 0
    while chunk := response.read(CHUNK_BYTES):
        chunks.append(chunk)
        done += len(chunk)
        if progress is not None:
            progress(done, total)
    return b"".join(chunks)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


@dataclass(frozen=True)
class Endpoint:
    """Where the console is and who calls it: the API's base URL (the stage, without /admin), its region, and
    the caller's credentials (botocore's, possibly refreshable)."""

    api_url: str
    region: str
    credentials: Credentials


class AdminClient:
    """One method per console route (README, "Operator console"); each returns the answer's JSON or raises
    ApiError / TransportError."""

    def __init__(self, endpoint: Endpoint, transport: Transport | None = None) -> None:
        self._endpoint = endpoint
        self._transport: Transport = transport or UrllibTransport()

    # --- Partners ---------------------------------------------------------------------------------------------

    def list_partners(self, filters: Mapping[str, str | int | None]) -> Any:
        query = {name: str(value) for name, value in filters.items() if value is not None}
        return self.call("GET", "/admin/partners", query=query).json()

    def show_partner(self, partner_id: str) -> Any:
        return self.call("GET", _partner_path(partner_id)).json()

    def suspend(self, partner_id: str, reason: str) -> Any:
        return self.call("POST", f"{_partner_path(partner_id)}/suspend", body={"reason": reason}).json()

    def resume(self, partner_id: str, reason: str) -> Any:
        return self.call("POST", f"{_partner_path(partner_id)}/resume", body={"reason": reason}).json()

    def set_tier(self, partner_id: str, tier: str, reason: str) -> Any:
        return self.call("POST", f"{_partner_path(partner_id)}/tier", body={"tier": tier, "reason": reason}).json()

    # --- Keys -------------------------------------------------------------------------------------------------

    def rotate_key(self, partner_id: str, grace_seconds: int, reason: str) -> Any:
        body = {"grace_seconds": grace_seconds, "reason": reason}
        return self.call("POST", f"{_partner_path(partner_id)}/key", body=body).json()

    def revoke_key(self, partner_id: str, reason: str) -> Any:
        return self.call("DELETE", f"{_partner_path(partner_id)}/key", body={"reason": reason}).json()

    def import_keys(self, csv_text: str, reason: str | None = None) -> Any:
        query = {"reason": reason} if reason else None
        return self.call("POST", "/admin/keys/import", query=query, raw=csv_text.encode(), content_type=CSV_TYPE).json()

    # --- Usage ------------------------------------------------------------------------------------------------

    def grant_extension(self, partner_id: str, requests: int, tokens: int, reason: str) -> Any:
        body = {"requests": requests, "tokens": tokens, "reason": reason}
        return self.call("POST", f"{_partner_path(partner_id)}/extensions", body=body).json()

    def export_usage(self, period: str | None, file_format: str, progress: Progress | None = None) -> bytes:
        query = {"format": file_format, **({"period": period} if period else {})}
        return self.call("GET", "/admin/usage", query=query, progress=progress).body

    # --- Any call ---------------------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = JSON_TYPE,
        progress: Progress | None = None,
    ) -> Reply:
        """One signed request; ApiError for an answer >= 400."""
        url = (
            self._endpoint.api_url
            + path
            + (f"?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}" if query else "")
        )
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
        headers = {"Content-Type": content_type, "Accept": JSON_TYPE, "User-Agent": USER_AGENT}
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        SigV4Auth(self._endpoint.credentials, SERVICE, self._endpoint.region).add_auth(request)
        reply = self._transport(method, url, dict(request.headers.items()), data or None, progress)
        if reply.status >= 400:
            raise ApiError(reply)
        return reply


def _partner_path(partner_id: str) -> str:
    return f"/admin/partners/{urllib.parse.quote(partner_id, safe='')}"
