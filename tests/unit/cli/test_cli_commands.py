"""`metered-ai` commands against a fake transport: the request each one sends (signed, with its body), what it
prints for people and with --json, and the exit code of every kind of answer.

The fake answers as the README's "Operator console" documents each route: POST /admin/partners/{id}/tier
{tier, reason}; POST .../extensions {requests, tokens, reason}; POST .../key {grace_seconds, reason} answering
the new key value; POST /admin/keys/import?reason= with a CSV body answering `imported` and `rejected` rows
(`row`, `code`, `reason`, `email`); GET /admin/usage?period=&format=. tests/e2e/test_operator_cli*.py run the
same commands against the offline stack."""

import json
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from cli.client import Reply
from cli.exit_codes import ExitCode
from offline.events import IncomingRequest
from offline.iam_auth import IamCaller, OperatorCredentials, SigV4Verifier
from tests.unit.cli.conftest import ACCESS_KEY, API_URL, SECRET_KEY, Cli, FakeTransport, Sent, no_answer, reply

PARTNER = "p_0123456789abcdef0123456789abcdef"
SUMMARY = {
    "partner_id": PARTNER,
    "name": "Grace [bold]Hopper[/bold]",
    "email": "grace@example.com",
    "tier": "pro",
    "status": "ACTIVE",
    "api_key_id": "k1a2b3c4d5",
    "key_prefix": "AbCd",
    "created_at": "2026-12-01T10:00:00+00:00",
}
AUDIT = {
    "partner_id": PARTNER,
    "seq": 3,
    "at": "2026-12-05T08:00:00+00:00",
    "actor": "arn:aws:iam::1:user/ops",
    "action": "suspend",
    "reason": "abuse report",
    "outcome": "applied",
    "details": {},
    "notified": True,
}
NEW_KEY = "Zq9XvB3nLm7TkWp2Rs8YcD4fGh6JaE1uNo5QiKt0"


def verified(sent: Sent, region: str = "eu-west-1") -> IamCaller | object:
    """What the offline gateway's SigV4 check (botocore's signer, as API Gateway verifies) makes of the request."""
    url = urlsplit(sent.url)
    stage, _, path = url.path.lstrip("/").partition("/")
    request = IncomingRequest(
        sent.method,
        "/" + path,
        parse_qsl(url.query, keep_blank_values=True),
        [("Host", url.netloc), *sent.headers.items()],
        sent.body or b"",
        "127.0.0.1",
        url.netloc,
    )
    accepted = OperatorCredentials(ACCESS_KEY, SECRET_KEY, "AIDAEXAMPLE", "arn:aws:iam::123456789012:user/ops")
    return SigV4Verifier(accepted, region, lambda: datetime.now(UTC)).verify(request, stage)


# --- Requests: signed, to the documented route, with the documented body ----------------------------------------


def test_partners_list_sends_a_sigv4_signed_get_with_the_filters(cli: Cli, transport: FakeTransport) -> None:
    # Given the console answers one page
    transport.replies.append(reply(HTTPStatus.OK, {"partners": [SUMMARY], "next": None}))

    # When an operator lists pro partners
    done = cli("partners", "list", "--tier", "pro", "--limit", "10")

    # Then one GET with the filters went out, signed for execute-api in the URL's region with botocore's chain
    assert done.exit_code == ExitCode.OK, done.output
    (sent,) = transport.sent
    assert (sent.method, sent.path, sent.query) == ("GET", "/prod/admin/partners", {"tier": "pro", "limit": "10"})
    authorization = sent.headers["Authorization"]
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization
    assert "X-Amz-Date" in sent.headers
    assert isinstance(verified(sent), IamCaller), "the offline gateway's verifier accepts the signature"
    # And people get a table with the whole id and the name as data, not markup
    assert PARTNER in done.stdout
    assert "Grace [bold]Hopper[/bold]" in done.stdout


def test_json_prints_the_apis_answer_as_it_is(cli: Cli, transport: FakeTransport) -> None:
    page = {"partners": [SUMMARY], "next": None}
    transport.replies.append(reply(HTTPStatus.OK, page))
    done = cli("--json", "partners", "list")

    assert done.exit_code == ExitCode.OK
    assert json.loads(done.stdout) == page


def test_partners_list_all_follows_next_to_the_last_page(cli: Cli, transport: FakeTransport) -> None:
    second = {**SUMMARY, "partner_id": "p_" + "f" * 32}
    transport.replies += [
        reply(HTTPStatus.OK, {"partners": [SUMMARY], "next": "token-1"}),
        reply(HTTPStatus.OK, {"partners": [second], "next": None}),
    ]
    done = cli("--json", "partners", "list", "--all", "--status", "ACTIVE")

    assert done.exit_code == ExitCode.OK, done.output
    assert [sent.query for sent in transport.sent] == [
        {"status": "ACTIVE", "limit": "50"},
        {"status": "ACTIVE", "limit": "50", "next": "token-1"},
    ]
    assert json.loads(done.stdout) == {"partners": [SUMMARY, second], "next": None}


def test_a_page_with_more_says_how_to_get_the_next_one_on_stderr(cli: Cli, transport: FakeTransport) -> None:
    transport.replies.append(reply(HTTPStatus.OK, {"partners": [SUMMARY], "next": "token-1"}))
    done = cli("partners", "list")
    assert done.exit_code == ExitCode.OK
    assert "--next token-1" in done.stderr
    assert "token-1" not in done.stdout


@pytest.mark.parametrize(
    ("args", "method", "path", "body"),
    [
        (["partners", "suspend", PARTNER, "--reason", "abuse"], "POST", "/suspend", {"reason": "abuse"}),
        (["partners", "resume", PARTNER, "--reason", "paid"], "POST", "/resume", {"reason": "paid"}),
        (["keys", "revoke", PARTNER, "--reason", "leaked"], "DELETE", "/key", {"reason": "leaked"}),
        (
            ["partners", "set-tier", PARTNER, "enterprise", "--reason", "deal 42"],
            "POST",
            "/tier",
            {"tier": "enterprise", "reason": "deal 42"},
        ),
        (
            ["usage", "grant", PARTNER, "--requests", "100", "--tokens", "5000", "--reason", "launch week"],
            "POST",
            "/extensions",
            {"requests": 100, "tokens": 5000, "reason": "launch week"},
        ),
        (
            ["keys", "rotate", PARTNER, "--grace", "3600", "--reason", "scheduled"],
            "POST",
            "/key",
            {"grace_seconds": 3600, "reason": "scheduled"},
        ),
    ],
)
def test_each_change_sends_its_documented_body_with_the_reason(
    *, cli: Cli, transport: FakeTransport, args: list[str], method: str, path: str, body: dict[str, Any]
) -> None:
    transport.replies.append(reply(HTTPStatus.OK, {"partner": SUMMARY, "audit": AUDIT, "api_key": NEW_KEY}))

    done = cli(*args)

    assert done.exit_code == ExitCode.OK, done.output
    (sent,) = transport.sent
    assert (sent.method, sent.path) == (method, f"/prod/admin/partners/{PARTNER}{path}")
    assert sent.json() == body
    assert sent.headers["Content-Type"] == "application/json"
    assert isinstance(verified(sent), IamCaller)
    assert f"{PARTNER}: suspend applied, now ACTIVE on pro (audit entry 3" in done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["partners", "suspend", PARTNER],
        ["partners", "resume", PARTNER],
        ["partners", "set-tier", PARTNER, "pro"],
        ["keys", "rotate", PARTNER],
        ["keys", "revoke", PARTNER],
        ["usage", "grant", PARTNER, "--requests", "5"],
    ],
)
def test_a_change_without_a_reason_is_a_usage_error_and_sends_nothing(
    cli: Cli, transport: FakeTransport, args: list[str]
) -> None:
    done = cli(*args)
    assert done.exit_code == ExitCode.USAGE
    assert "--reason" in done.stderr
    assert transport.sent == []


def test_a_grant_of_nothing_and_a_grace_past_seven_days_are_usage_errors(cli: Cli, transport: FakeTransport) -> None:
    assert cli("usage", "grant", PARTNER, "--reason", "x").exit_code == ExitCode.USAGE
    assert cli("keys", "rotate", PARTNER, "--grace", str(7 * 86400 + 1), "--reason", "x").exit_code == ExitCode.USAGE
    assert transport.sent == []


def test_a_partner_id_is_one_path_segment_whatever_it_holds(cli: Cli, transport: FakeTransport) -> None:
    transport.replies.append(reply(HTTPStatus.NOT_FOUND, {"error": {"code": "partner_not_found", "message": "no"}}))
    cli("partners", "show", "../../v1/models?x=1")
    (sent,) = transport.sent
    assert sent.url == f"{API_URL}/admin/partners/..%2F..%2Fv1%2Fmodels%3Fx%3D1"


# --- Rotation: the new key once, on stdout only ------------------------------------------------------------------


def test_rotate_prints_the_new_key_once_on_stdout_and_never_on_stderr(cli: Cli, transport: FakeTransport) -> None:
    transport.replies.append(reply(HTTPStatus.OK, {"partner": SUMMARY, "audit": AUDIT, "api_key": NEW_KEY}))

    done = cli("keys", "rotate", PARTNER, "--reason", "lost key")

    assert done.exit_code == ExitCode.OK
    assert done.stdout.count(NEW_KEY) == 1
    assert NEW_KEY not in done.stderr
    assert f"\n{NEW_KEY}\n" in done.stdout, "alone on its line, to copy or to read with a script"


def test_rotate_says_when_the_old_key_stops_working(cli: Cli, transport: FakeTransport) -> None:
    retired = {"api_key_id": "oldkey0001", "delete_at": "2026-12-05T09:00:00+00:00", "deleted": False}
    answer = {"partner": SUMMARY, "audit": AUDIT, "api_key": NEW_KEY, "api_key_id": "k2", "retired_key": retired}
    transport.replies += [reply(HTTPStatus.OK, answer), reply(HTTPStatus.OK, {**answer, "retired_key": None})]

    graced = cli("keys", "rotate", PARTNER, "--grace", "3600", "--reason", "scheduled")
    reissued = cli("keys", "rotate", PARTNER, "--reason", "re-issue")

    assert "old key oldkey0001: works until 2026-12-05T09:00:00+00:00, then deleted" in graced.stdout
    assert "old key" not in reissued.stdout
    assert reissued.stdout.count(NEW_KEY) == 1


def test_rotate_with_json_prints_the_answer_with_the_key_once(cli: Cli, transport: FakeTransport) -> None:
    answer = {"partner": SUMMARY, "audit": AUDIT, "api_key": NEW_KEY}
    transport.replies.append(reply(HTTPStatus.OK, answer))
    done = cli("--json", "keys", "rotate", PARTNER, "--reason", "lost key")

    assert json.loads(done.stdout) == answer
    assert done.stdout.count(NEW_KEY) == 1
    assert NEW_KEY not in done.stderr


# --- Exit codes and errors ---------------------------------------------------------------------------------------


def error(code: str, message: str, **more: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **more}}


GATEWAY_403 = {"x-amzn-ErrorType": "MissingAuthenticationTokenException"}


@pytest.mark.parametrize(
    ("status", "body", "headers", "exit_code", "shown"),
    [
        (404, error("partner_not_found", "no partner"), {}, ExitCode.NOT_FOUND, "404 partner_not_found: no partner"),
        (
            400,
            error("invalid_request", "bad", details=[{"field": "tier", "message": "unknown tier"}]),
            {},
            ExitCode.REFUSED,
            "unknown tier",
        ),
        (409, error("change_in_progress", "busy"), {"Retry-After": "2"}, ExitCode.REFUSED, "retry after 2 s"),
        (409, error("partner_revoked", "revoked"), {}, ExitCode.REFUSED, "409 partner_revoked"),
        (
            403,
            {"message": "Missing Authentication Token"},
            GATEWAY_403,
            ExitCode.NOT_AUTHORIZED,
            "403 MissingAuthenticationTokenException: Missing Authentication Token",
        ),
        (403, error("operator_unknown", "who"), {}, ExitCode.NOT_AUTHORIZED, "operator_unknown"),
        (429, {"message": "Too Many Requests"}, {}, ExitCode.UNAVAILABLE, "429"),
        (500, {"message": "Internal server error"}, {}, ExitCode.UNAVAILABLE, "500"),
        (503, error("throttled", "slow down"), {"Retry-After": "1"}, ExitCode.UNAVAILABLE, "503 throttled"),
        (502, b"<html>bad gateway</html>", {}, ExitCode.UNAVAILABLE, "bad gateway"),
    ],
)
def test_each_kind_of_answer_has_its_exit_code_and_its_error_on_stderr(
    *, cli: Cli, transport: FakeTransport, status: int, body: Any, headers: dict[str, str], exit_code: int, shown: str
) -> None:
    transport.replies.append(reply(status, body, headers))

    done = cli("partners", "show", PARTNER)

    assert done.exit_code == exit_code
    assert shown in done.stderr
    assert done.stdout == ""


def test_with_json_an_error_answer_is_printed_as_is_too(cli: Cli, transport: FakeTransport) -> None:
    error = {"error": {"code": "partner_not_found", "message": "no partner"}}
    transport.replies.append(reply(HTTPStatus.NOT_FOUND, error))
    done = cli("--json", "partners", "suspend", PARTNER, "--reason", "x")

    assert done.exit_code == ExitCode.NOT_FOUND
    assert json.loads(done.stdout) == error


def test_no_answer_at_all_is_unavailable(cli: Cli, transport: FakeTransport) -> None:
    transport.replies.append(no_answer())
    done = cli("partners", "list")
    assert done.exit_code == ExitCode.UNAVAILABLE
    assert "Connection refused" in done.stderr


@pytest.mark.parametrize(
    "target",
    [(), ("--api-url", API_URL, "--stack", "prod"), ("--local", "--api-url", API_URL)],
)
def test_no_target_or_two_targets_is_a_usage_error(cli: Cli, transport: FakeTransport, target: tuple[str, ...]) -> None:
    done = cli("partners", "list", target=target)
    assert done.exit_code == ExitCode.USAGE
    assert "--local, --stack NAME or --api-url URL" in done.stderr
    assert transport.sent == []


# --- Import: batches, progress, rows as in the file ----------------------------------------------------------------

HEADER = "key,name,description,enabled,usageplanIds,email,tier"


def import_csv(folder: Path, rows: int) -> tuple[Path, list[str]]:
    values = [f"imported-key-value-{index:04d}-abcdefghij" for index in range(rows)]
    lines = [HEADER] + [f"{value},Partner {i},moved,true,,p{i}@example.com,pro" for i, value in enumerate(values)]
    path = folder / "keys.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, values


def import_answer(sent: Sent) -> Any:
    """Per batch, as the import route answers: row 1 is the first row under the header; every 3rd row refused."""
    lines = (sent.body or b"").decode().strip().splitlines()
    assert lines[0] == HEADER, "each batch carries the header"
    imported, rejected = [], []
    for row, line in enumerate(lines[1:], start=1):
        email = line.split(",")[5]
        if email.startswith("p") and int(email[1:].split("@")[0]) % 3 == 2:
            rejected.append({"row": row, "code": "duplicate_email", "reason": "registered already", "email": email})
        else:
            imported.append({"row": row, "partner_id": f"p_{row}", "email": email, "tier": "pro", "key_prefix": "abcd"})
    return reply(HTTPStatus.OK, {"imported": imported, "rejected": rejected})


def test_import_sends_the_file_in_batches_with_the_header_and_reports_rows_as_in_the_file(
    cli: Cli, transport: FakeTransport, tmp_path: Path
) -> None:
    # Given a CSV of 7 rows, two of which the API refuses (file rows 3 and 6)
    path, values = import_csv(tmp_path, 7)
    transport.answer = import_answer

    # When it is imported 3 rows at a time
    done = cli("--json", "keys", "import", str(path), "--batch-size", "3")

    # Then 3 CSV requests went out, each signed; the refused rows are numbered as in the file
    assert [sent.headers["Content-Type"] for sent in transport.sent] == ["text/csv"] * 3
    assert all(sent.path == "/prod/admin/keys/import" for sent in transport.sent)
    assert all(isinstance(verified(sent), IamCaller) for sent in transport.sent)
    report = json.loads(done.stdout)
    assert [row["row"] for row in report["rejected"]] == [3, 6]
    assert [row["row"] for row in report["imported"]] == [1, 2, 4, 5, 7]
    # And the exit code says some rows were refused; progress went to stderr; no key value was printed anywhere
    assert done.exit_code == ExitCode.PARTIAL
    assert "importing rows" in done.stderr
    assert not any(value in done.stdout + done.stderr for value in values)


@pytest.mark.parametrize(
    ("failure", "code"),
    [(reply(HTTPStatus.SERVICE_UNAVAILABLE, error("capacity_exhausted", "ceiling")), "not_confirmed"),
     (no_answer(), "not_confirmed"),
     (reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, error("payload_too_large", "too big")), "payload_too_large")],
)  # fmt: skip
def test_a_batch_that_fails_after_others_went_in_is_reported_row_by_row_and_the_rest_still_sent(
    cli: Cli, transport: FakeTransport, tmp_path: Path, failure: Any, code: str
) -> None:
    # Given a CSV of 7 rows sent 3 at a time, whose second batch fails as a whole
    path, values = import_csv(tmp_path, 7)
    answers = iter([None, failure, None])

    def answer(sent: Sent) -> Reply:
        scripted = next(answers)
        if isinstance(scripted, Exception):
            raise scripted
        return scripted or import_answer(sent)

    transport.answer = answer

    # When it is imported with a reason
    done = cli("--json", "keys", "import", str(path), "--batch-size", "3", "--reason", "migration")

    # Then every batch was sent with the reason; the first batch's rows stay reported as imported, the failed
    # batch's rows (4-6) are reported with why, the last batch's as answered; the exit code says partial
    assert [sent.query for sent in transport.sent] == [{"reason": "migration"}] * 3
    report = json.loads(done.stdout)
    assert [row["row"] for row in report["imported"]] == [1, 2, 7]
    assert [(row["row"], row["code"]) for row in report["rejected"]] == [(3, "duplicate_email")] + [
        (row, code) for row in (4, 5, 6)
    ]
    assert done.exit_code == ExitCode.PARTIAL
    assert not any(value in done.stdout + done.stderr for value in values)


def test_a_query_with_spaces_is_signed_as_api_gateway_reads_it(
    cli: Cli, transport: FakeTransport, tmp_path: Path
) -> None:
    # Given a reason with a space and a plus (API Gateway reads `+` in a query as a space)
    path, _ = import_csv(tmp_path, 1)
    transport.answer = import_answer

    # When it is sent
    done = cli("keys", "import", str(path), "--reason", "migration 7 + more")

    # Then the server reads the reason as written and the signature verifies
    assert done.exit_code == ExitCode.OK, done.output
    assert transport.sent[0].query == {"reason": "migration 7 + more"}
    assert isinstance(verified(transport.sent[0]), IamCaller)


def test_an_import_whose_first_batch_is_refused_exits_with_the_apis_error(
    cli: Cli, transport: FakeTransport, tmp_path: Path
) -> None:
    path, _ = import_csv(tmp_path, 4)
    transport.replies = [
        reply(HTTPStatus.SERVICE_UNAVAILABLE, error("capacity_exhausted", "the account's key ceiling"))
    ]
    done = cli("keys", "import", str(path), "--batch-size", "2")
    assert done.exit_code == ExitCode.UNAVAILABLE
    assert "capacity_exhausted" in done.stderr
    assert len(transport.sent) == 1


def test_an_import_with_every_row_taken_exits_ok_with_a_table(
    cli: Cli, transport: FakeTransport, tmp_path: Path
) -> None:
    path, _ = import_csv(tmp_path, 2)
    transport.answer = import_answer
    done = cli("keys", "import", str(path))
    assert done.exit_code == ExitCode.OK, done.output
    assert len(transport.sent) == 1
    assert "2 imported, 0 refused" in done.stdout


def test_an_empty_or_missing_import_file_is_a_usage_error(cli: Cli, transport: FakeTransport, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text(HEADER + "\n")
    assert cli("keys", "import", str(tmp_path / "empty.csv")).exit_code == ExitCode.USAGE
    assert cli("keys", "import", str(tmp_path / "missing.csv")).exit_code == ExitCode.USAGE
    assert transport.sent == []


# --- Export: the period's file, with a progress bar ------------------------------------------------------------------


def test_usage_export_writes_the_answer_to_the_file_with_progress_on_stderr(
    cli: Cli, transport: FakeTransport, tmp_path: Path
) -> None:
    csv = b"partner_id,name,email,tier,period,requests\np_1,Ada,ada@example.com,pro,2026-12,42\n"
    transport.replies.append(reply(HTTPStatus.OK, csv, {"Content-Type": "text/csv"}))
    output = tmp_path / "usage.csv"

    done = cli("usage", "export", "--period", "2026-12", "--format", "csv", "--output", str(output))

    assert done.exit_code == ExitCode.OK, done.output
    (sent,) = transport.sent
    assert (sent.method, sent.path, sent.query) == ("GET", "/prod/admin/usage", {"period": "2026-12", "format": "csv"})
    assert isinstance(verified(sent), IamCaller)
    assert output.read_bytes() == csv
    assert "usage 2026-12.csv" in done.stderr
    assert done.stdout == ""


def test_usage_export_without_output_writes_to_stdout(cli: Cli, transport: FakeTransport) -> None:
    rows = b'{"period": "2026-12", "partners": []}'
    transport.replies.append(reply(HTTPStatus.OK, rows))
    done = cli("usage", "export", "--period", "2026-12", "--format", "json")
    assert done.exit_code == ExitCode.OK
    assert done.stdout == rows.decode()


def test_usage_export_of_a_bad_period_shows_the_apis_error(cli: Cli, transport: FakeTransport) -> None:
    transport.replies.append(reply(HTTPStatus.BAD_REQUEST, {"error": {"code": "invalid_request", "message": "period"}}))
    done = cli("usage", "export", "--period", "12/2026")
    assert done.exit_code == ExitCode.REFUSED
    assert "400 invalid_request" in done.stderr
