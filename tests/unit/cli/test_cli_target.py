"""Where the CLI calls and as whom: --stack (DescribeStacks' AdminApiUrl output, pinned with Stubber against
botocore's model), --api-url (the region from the host name), --local (stack.json, found through --state-dir or
$METERED_AI_OFFLINE_STATE_DIR), and no credentials at all."""

from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path

import boto3
import pytest
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import TokenRetrievalError
from botocore.stub import Stubber
from typer.testing import CliRunner

from cli.app import Wiring, app
from cli.exit_codes import ExitCode
from cli.target import STATE_DIR_VARIABLE, TargetError, base_url, local_endpoint, stack_endpoint, url_endpoint
from tests.unit.cli.conftest import ACCESS_KEY, API_URL, Cli, FakeTransport, reply, stack_json

STACK = "metered-ai-prod"
ADMIN_URL = "https://a1b2c3d4e5.execute-api.ap-southeast-2.amazonaws.com/prod/admin"
PAGE = {"partners": [], "next": None}


def described(outputs: list[dict[str, str]]) -> dict[str, object]:
    return {
        "Stacks": [
            {
                "StackName": STACK,
                "CreationTime": datetime(2026, 12, 1, tzinfo=UTC),
                "StackStatus": "UPDATE_COMPLETE",
                "Outputs": outputs,
            }
        ]
    }


@pytest.fixture
def cloudformation(aws_session: boto3.Session) -> object:
    return aws_session.client("cloudformation", region_name="ap-southeast-2")


def test_stack_finds_the_admin_url_output_and_signs_for_the_stacks_region(
    cli: Cli, transport: FakeTransport, cloudformation: object
) -> None:
    # Given a stack whose outputs include AdminApiUrl
    outputs = [
        {"OutputKey": "ApiUrl", "OutputValue": ADMIN_URL.removesuffix("/admin")},
        {"OutputKey": "AdminApiUrl", "OutputValue": ADMIN_URL},
    ]
    cli.cloudformation = cloudformation
    transport.replies.append(reply(HTTPStatus.OK, PAGE))
    with Stubber(cloudformation) as stubber:  # type: ignore[arg-type]
        stubber.add_response("describe_stacks", described(outputs), {"StackName": STACK})

        # When an operator names the stack
        done = cli("partners", "list", target=("--stack", STACK))

        stubber.assert_no_pending_responses()
    # Then the call went to the stage's /admin/partners, signed for the stack's region
    assert done.exit_code == ExitCode.OK, done.output
    (sent,) = transport.sent
    assert sent.url == f"{ADMIN_URL}/partners?limit=50"
    assert "/ap-southeast-2/execute-api/aws4_request" in sent.headers["Authorization"]


def test_an_unknown_stack_is_a_usage_error_with_cloudformations_words(
    cli: Cli, transport: FakeTransport, cloudformation: object
) -> None:
    cli.cloudformation = cloudformation
    with Stubber(cloudformation) as stubber:  # type: ignore[arg-type]
        stubber.add_client_error(
            "describe_stacks", "ValidationError", f"Stack with id {STACK} does not exist", 400, {"StackName": STACK}
        )
        done = cli("partners", "list", target=("--stack", STACK))
    assert done.exit_code == ExitCode.USAGE
    assert f"Stack with id {STACK} does not exist" in done.stderr
    assert transport.sent == []


def test_a_stack_without_the_admin_output_is_a_usage_error(aws_session: boto3.Session, cloudformation: object) -> None:
    with Stubber(cloudformation) as stubber:  # type: ignore[arg-type]
        stubber.add_response("describe_stacks", described([{"OutputKey": "Other", "OutputValue": "x"}]))
        with pytest.raises(TargetError, match="no AdminApiUrl output") as raised:
            stack_endpoint(STACK, aws_session, cloudformation)  # type: ignore[arg-type]
    assert raised.value.exit_code == ExitCode.USAGE


def test_access_denied_on_describe_stacks_is_not_authorized(aws_session: boto3.Session, cloudformation: object) -> None:
    with Stubber(cloudformation) as stubber:  # type: ignore[arg-type]
        stubber.add_client_error("describe_stacks", "AccessDenied", "not allowed", 403)
        with pytest.raises(TargetError) as raised:
            stack_endpoint(STACK, aws_session, cloudformation)  # type: ignore[arg-type]
    assert raised.value.exit_code == ExitCode.NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://abc123.execute-api.eu-west-1.amazonaws.com/prod", "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"),
        ("https://abc123.execute-api.eu-west-1.amazonaws.com/prod/admin/", "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"),
        ("http://127.0.0.1:3000/live", "http://127.0.0.1:3000/live"),
        ("https://api.example.com", "https://api.example.com"),
    ],
)  # fmt: skip
def test_api_url_accepts_the_api_url_or_the_admin_url(url: str, expected: str) -> None:
    assert base_url(url) == expected


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "example.com", ""])
def test_api_url_must_be_http(url: str) -> None:
    with pytest.raises(TargetError):
        base_url(url)


def test_api_url_signs_for_the_region_in_its_host_name_or_the_one_given(aws_session: boto3.Session) -> None:
    on_aws = url_endpoint("https://abc123.execute-api.eu-central-1.amazonaws.com/prod", None, aws_session)
    custom = url_endpoint("https://api.example.com", "us-west-2", aws_session)
    assert (on_aws.region, custom.region) == ("eu-central-1", "us-west-2")
    assert on_aws.credentials.access_key == ACCESS_KEY
    with pytest.raises(TargetError, match="--region"):
        url_endpoint("https://api.example.com", None, aws_session)


def test_no_aws_credentials_is_not_authorized(
    cli: Cli, transport: FakeTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a credential chain that finds nothing (no environment keys, no files, no instance role)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    cli.session = boto3.Session()

    done = cli("partners", "list")

    assert done.exit_code == ExitCode.NOT_AUTHORIZED
    assert "no AWS credentials found" in done.stderr
    assert transport.sent == []


def test_local_reads_stack_json_from_the_state_dir_or_the_offline_variable(
    cli: Cli, transport: FakeTransport, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the offline stack's stack.json in a state folder
    folder = stack_json(tmp_path / "state", api_url="http://127.0.0.1:3999/live", region="us-east-1")
    transport.replies += [reply(HTTPStatus.OK, PAGE), reply(HTTPStatus.OK, PAGE)]

    # When the CLI is pointed at it by --state-dir, then by the variable `make local` honours too
    by_option = cli("partners", "list", target=("--state-dir", str(folder)))
    monkeypatch.setenv(STATE_DIR_VARIABLE, str(folder))
    by_variable = cli("partners", "list", target=("--local",))

    # Then both calls went to its URL, signed with its credentials for its region
    assert (by_option.exit_code, by_variable.exit_code) == (ExitCode.OK, ExitCode.OK)
    for sent in transport.sent:
        assert sent.url.startswith("http://127.0.0.1:3999/live/admin/partners")
        assert f"Credential={ACCESS_KEY}/" in sent.headers["Authorization"]
        assert "/us-east-1/execute-api/" in sent.headers["Authorization"]


def test_local_without_a_running_stack_says_so(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match="is `make local` running") as raised:
        local_endpoint(tmp_path)
    assert raised.value.exit_code == ExitCode.USAGE
    (tmp_path / "stack.json").write_text('{"api_url": "http://127.0.0.1:1/live"}')
    with pytest.raises(TargetError, match=r"not a stack\.json"):
        local_endpoint(tmp_path)


def test_an_unknown_profile_is_a_usage_error(aws_session: boto3.Session, transport: FakeTransport) -> None:
    # The real wiring: boto3.Session(profile_name=...)
    done = CliRunner().invoke(
        app, ["--api-url", API_URL, "--profile", "no-such-profile", "partners", "list"], obj=Wiring(transport=transport)
    )
    assert done.exit_code == ExitCode.USAGE
    assert "no-such-profile" in done.stderr
    assert transport.sent == []


class ExpiredSsoSession:
    """What botocore's chain hands out after an SSO login expired: credentials that fail on their first use."""

    region_name = "eu-west-1"

    def get_credentials(self) -> RefreshableCredentials:
        def refresh() -> dict[str, str]:
            raise TokenRetrievalError(provider="sso", error_msg="the SSO session has expired")

        return RefreshableCredentials("AKID", "secret", "token", datetime(2000, 1, 1, tzinfo=UTC), refresh, "sso")


def test_credentials_that_fail_to_refresh_when_signing_are_not_authorized(cli: Cli, transport: FakeTransport) -> None:
    cli.session = ExpiredSsoSession()  # type: ignore[assignment]
    done = cli("partners", "list")
    assert done.exit_code == ExitCode.NOT_AUTHORIZED
    assert "the SSO session has expired" in done.stderr
    assert transport.sent == []


def test_stack_without_any_region_says_to_pass_one(cli: Cli, transport: FakeTransport) -> None:
    # Given no region in the environment or config (the aws_session fixture clears them)
    done = cli("partners", "list", target=("--stack", STACK))
    assert done.exit_code == ExitCode.USAGE
    assert "--region" in done.stderr
    assert transport.sent == []
