"""API Gateway's AWS_IAM authorization, offline: SigV4 signatures (service `execute-api`, the stack's region)
verified against the one set of credentials the offline stack accepts, which it generates at each start and
writes to stack.json (`aws_credentials`).

The expected signature is computed by botocore's own SigV4 signer over the request as received (only the
headers the caller signed, the query re-encoded as SigV4 canonicalises it), so a client that signs the way
AWS's SDKs, the AWS CLI or curl's --aws-sigv4 do is accepted, and anything else gets API Gateway's answers:

- no Authorization header: 403 `Missing Authentication Token` (MissingAuthenticationTokenException);
- an Authorization header without its parts: 403 IncompleteSignatureException;
- an access key id it does not know: 403 `The security token included in the request is invalid.`
  (UnrecognizedClientException);
- a credential scope for another region or service, a date more than 5 minutes off the clock, or a signature
  that does not match: 403 InvalidSignatureException with AWS's words.
Presigned URLs (X-Amz-Signature in the query) are not emulated: such a request counts as unsigned.
"""

import hashlib
import hmac
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from urllib.parse import quote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

from offline.events import IncomingRequest
from offline.gateway_responses import REFUSALS, Refusal, ResponseType
from offline.template import ACCOUNT_ID

SERVICE = "execute-api"
ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
ALLOWED_SKEW = timedelta(minutes=5)
OPERATOR_USER = "offline-operator"
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS Secret "
    "Access Key and signing method. Consult the service documentation for details."
)


@dataclass(frozen=True)
class OperatorCredentials:
    """The credentials the offline gateway accepts on AWS_IAM routes, and the IAM user they stand for."""

    access_key_id: str
    secret_access_key: str
    user_id: str
    user_arn: str

    @classmethod
    def generate(cls) -> "OperatorCredentials":
        upper = string.ascii_uppercase + string.digits
        return cls(
            access_key_id="AKIA" + "".join(secrets.choice(upper) for _ in range(16)),
            secret_access_key=secrets.token_urlsafe(30)[:40],
            user_id="AIDA" + "".join(secrets.choice(upper) for _ in range(17)),
            user_arn=f"arn:aws:iam::{ACCOUNT_ID}:user/{OPERATOR_USER}",
        )

    def public(self) -> dict[str, str]:
        """What stack.json holds: enough to sign requests (it is a local, throwaway key pair)."""
        return {"access_key_id": self.access_key_id, "secret_access_key": self.secret_access_key}


@dataclass(frozen=True)
class IamCaller:
    """What API Gateway puts in requestContext.identity for a request IAM authorized."""

    access_key: str
    user_arn: str
    user_id: str
    account_id: str = ACCOUNT_ID


def refusal(response_type: ResponseType, message: str, error_type: str) -> Refusal:
    return Refusal(response_type, HTTPStatus.FORBIDDEN, message, amzn_error_type=error_type)


MISSING_TOKEN = Refusal(
    ResponseType.MISSING_AUTHENTICATION_TOKEN,
    HTTPStatus.FORBIDDEN,
    REFUSALS[ResponseType.MISSING_AUTHENTICATION_TOKEN].message,
    amzn_error_type="MissingAuthenticationTokenException",
)


class SigV4Verifier:
    """Verifies SigV4-signed requests for one region against the accepted credentials."""

    def __init__(
        self, credentials: OperatorCredentials, region: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.credentials = credentials
        self._region = region
        self._now = now

    def verify(self, request: IncomingRequest, stage: str) -> IamCaller | Refusal:
        headers = {name.lower(): value for name, value in request.headers}
        authorization = headers.get("authorization", "").strip()
        if not authorization:
            return MISSING_TOKEN
        signed = _parse(authorization, headers.get("x-amz-date", ""))
        if isinstance(signed, Refusal):
            return signed
        refused = self._scope_refusal(signed, "x-amz-security-token" in headers)
        if refused is not None:
            return refused
        expected, canonical, to_sign = self._expected(request, stage, headers, signed)
        if not hmac.compare_digest(expected, signed.signature):
            detail = (
                f"\n\nThe Canonical String for this request should have been\n'{canonical}'\n\n"
                f"The String-to-Sign should have been\n'{to_sign}'\n"
            )
            return refusal(ResponseType.INVALID_SIGNATURE, BAD_SIGNATURE + detail, "InvalidSignatureException")
        return IamCaller(
            access_key=signed.access_key, user_arn=self.credentials.user_arn, user_id=self.credentials.user_id
        )

    def _scope_refusal(self, signed: "_Signature", session_token: bool) -> Refusal | None:
        """The key, the credential scope and the date, checked before the signature, in AWS's order."""
        if signed.access_key != self.credentials.access_key_id or session_token:
            return refusal(
                ResponseType.INVALID_SIGNATURE,
                "The security token included in the request is invalid.",
                "UnrecognizedClientException",
            )
        if signed.region != self._region:
            message = f"Credential should be scoped to a valid region, not '{signed.region}'. "
        elif signed.service != SERVICE:
            message = f"Credential should be scoped to correct service: '{SERVICE}'. "
        else:
            message = self._stale(signed.amz_date, signed.day) or ""
        return refusal(ResponseType.INVALID_SIGNATURE, message, "InvalidSignatureException") if message else None

    def _stale(self, amz_date: str, day: str) -> str | None:
        try:
            signed_at = datetime.strptime(amz_date, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
        except ValueError:
            return f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        if amz_date[:8] != day:
            return (
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
                f"'{day}' != '{amz_date[:8]}', from '{amz_date}'."
            )
        now = self._now().astimezone(UTC).replace(microsecond=0)
        stamp = now.strftime(SIGV4_TIMESTAMP)
        if signed_at < now - ALLOWED_SKEW:
            earliest = (now - ALLOWED_SKEW).strftime(SIGV4_TIMESTAMP)
            return f"Signature expired: {amz_date} is now earlier than {earliest} ({stamp} - 5 min.)"
        if signed_at > now + ALLOWED_SKEW:
            latest = (now + ALLOWED_SKEW).strftime(SIGV4_TIMESTAMP)
            return f"Signature not yet current: {amz_date} is still later than {latest} ({stamp} + 5 min.)"
        return None

    def _expected(
        self, request: IncomingRequest, stage: str, headers: dict[str, str], signed: "_Signature"
    ) -> tuple[str, str, str]:
        """The signature botocore computes for this request as received; and its canonical request and
        string to sign (API Gateway shows both when they differ)."""
        names = [name.strip().lower() for name in signed.signed_headers.split(";") if name.strip()]
        signed_headers = HTTPHeaders()
        for name, value in request.headers:
            if name.lower() in names:
                signed_headers.add_header(name.lower(), value)
        host = headers.get("host", request.host)
        to_verify = AWSRequest(
            method=request.method,
            # http: the payload is always hashed (execute-api signs the body); the scheme is not signed.
            # The query as SigV4 canonicalises it (decoded, then each name and value percent-encoded), as AWS
            # does on its side; botocore sorts the pairs.
            url=f"http://{host}/{stage}{request.path}?{_canonical_query(request.query)}",
            headers=dict(signed_headers.items()),
            data=request.body,
        )
        to_verify.context["timestamp"] = signed.amz_date
        credentials = Credentials(self.credentials.access_key_id, self.credentials.secret_access_key)
        signer = _SignedHeadersOnly(credentials, SERVICE, self._region, signed_headers)
        content_hash = headers.get("x-amz-content-sha256")
        if content_hash is not None and content_hash != hashlib.sha256(request.body).hexdigest():
            # botocore would trust the header; API Gateway checks it against the body.
            to_verify.headers["X-Amz-Content-SHA256"] = hashlib.sha256(request.body).hexdigest()
        canonical = signer.canonical_request(to_verify)
        to_sign = signer.string_to_sign(to_verify, canonical)
        return signer.signature(to_sign, to_verify), canonical, to_sign


class _SignedHeadersOnly(SigV4Auth):
    """botocore's signer, told which headers the caller signed (it would otherwise pick its own set)."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: HTTPHeaders) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed


def _canonical_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in pairs)


@dataclass(frozen=True)
class _Signature:
    """An `AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` header and its X-Amz-Date."""

    access_key: str
    day: str
    region: str
    service: str
    signed_headers: str
    signature: str
    amz_date: str


def _parse(authorization: str, amz_date: str) -> _Signature | Refusal:
    _, _, rest = authorization.partition(" ")
    parts = {}
    for piece in rest.split(","):
        name, equals, value = piece.strip().partition("=")
        if equals and name in ("Credential", "SignedHeaders", "Signature"):
            parts[name] = value.strip()
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if name not in parts
    ]
    if not amz_date:
        problems.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    scope = parts.get("Credential", "").split("/")
    if not problems and (len(scope) != 5 or scope[4] != "aws4_request"):
        problems.append("Credential should be scoped to a valid region, service and 'aws4_request' terminator.")
    if not authorization.startswith(ALGORITHM + " ") or problems:
        message = " ".join(problems) or f"Authorization header requires the {ALGORITHM} algorithm."
        return refusal(ResponseType.INVALID_SIGNATURE, message, "IncompleteSignatureException")
    access_key, day, region, service, _ = scope
    return _Signature(access_key, day, region, service, parts["SignedHeaders"], parts["Signature"], amz_date)
