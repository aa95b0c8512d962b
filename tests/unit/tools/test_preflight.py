"""`make deploy`'s pre-flight against API Gateway's GetAccount (Stubber pins the request against botocore's
model): a Region without a CloudWatch role stops the deploy, naming the parameter that fixes it."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tools.preflight import (
    deploy_parameters,
    logging_role_note,
    logging_role_problem,
    main,
    reserved_concurrency_problem,
    template_defaults,
)

ROLE_ARN = "arn:aws:iam::123456789012:role/apigateway-cloudwatch"


@pytest.fixture
def apigateway() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("apigateway", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def test_no_role_and_no_role_created_stops_the_deploy_with_the_parameter_to_set(
    apigateway: tuple[Any, Stubber],
) -> None:
    # Given a fresh Region: API Gateway's account settings have no CloudWatch role
    client, stubber = apigateway
    stubber.add_response("get_account", {"throttleSettings": {"rateLimit": 10000.0, "burstLimit": 5000}}, {})

    # When the pre-flight checks a deploy with CreateApiGatewayLoggingRole=false
    problem = logging_role_problem(client, creates_logging_role=False, config_env="prod")

    # Then it stops, saying why and exactly what to set where
    assert problem is not None
    assert "API Gateway in eu-west-1 has no CloudWatch Logs role" in problem
    assert '"CreateApiGatewayLoggingRole=true"' in problem
    assert "[prod.deploy.parameters]" in problem
    assert "sam deploy --parameter-overrides CreateApiGatewayLoggingRole=true" in problem


def test_an_existing_role_lets_the_deploy_go_on(apigateway: tuple[Any, Stubber]) -> None:
    # Given a Region whose API Gateway already has a CloudWatch role
    client, stubber = apigateway
    stubber.add_response("get_account", {"cloudwatchRoleArn": ROLE_ARN}, {})
    stubber.add_response("get_account", {"cloudwatchRoleArn": ROLE_ARN}, {})

    # Then nothing stops the deploy, and nothing needs saying
    assert logging_role_problem(client, creates_logging_role=False, config_env="dev") is None
    assert logging_role_note(client, creates_logging_role=False) is None


def test_creating_the_role_needs_none_and_warns_when_one_exists(apigateway: tuple[Any, Stubber]) -> None:
    client, stubber = apigateway
    stubber.add_response("get_account", {"cloudwatchRoleArn": ROLE_ARN}, {})

    # A stack that creates the role is never stopped (no call needed)
    assert logging_role_problem(client, creates_logging_role=True, config_env="dev") is None
    # But replacing a role already in use is said
    note = logging_role_note(client, creates_logging_role=True)
    assert note is not None
    assert ROLE_ARN in note


def test_parameters_come_from_the_config_env_sam_deploy_uses(tmp_path: Path) -> None:
    samconfig = tmp_path / "samconfig.toml"
    samconfig.write_text(
        'version = 0.1\n[dev.deploy.parameters]\nparameter_overrides = ["StageName=live", '
        '"CreateApiGatewayLoggingRole=true"]\n[prod.deploy.parameters]\nparameter_overrides = "A=1 B=2"\n'
    )

    defaults = template_defaults()
    assert deploy_parameters("dev", samconfig)["CreateApiGatewayLoggingRole"] == "true"
    assert deploy_parameters("prod", samconfig) == {**defaults, "A": "1", "B": "2"}
    assert deploy_parameters("missing", samconfig) == defaults
    assert defaults["CreateApiGatewayLoggingRole"] == "false"


def lambda_settings(unreserved: int) -> dict[str, Any]:
    return {"AccountLimit": {"ConcurrentExecutions": unreserved, "UnreservedConcurrentExecutions": unreserved}}


@pytest.mark.parametrize(("unreserved", "stops"), [(10, True), (114, True), (115, False), (1000, False)])
def test_reserved_concurrency_must_leave_100_unreserved(unreserved: int, stops: bool) -> None:
    # Given an account with `unreserved` executions left, and the template's default reservations (10 + 5)
    client = boto3.client("lambda", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_response("get_account_settings", lambda_settings(unreserved), {})

        # When the pre-flight checks a first create
        problem = reserved_concurrency_problem(client, template_defaults())

    # Then it stops exactly when fewer than 100 would be left, naming both parameters
    assert (problem is not None) is stops
    if problem:
        assert f"has {unreserved} unreserved" in problem
        assert '"SignupReservedConcurrency=0" and "WebhookReservedConcurrency=0"' in problem


def test_the_command_exits_non_zero_with_the_message(
    apigateway: tuple[Any, Stubber], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the project's samconfig.toml (dev does not create the role) and a Region without one
    client, stubber = apigateway
    stubber.add_response("get_account", {}, {})
    stubber.add_response("get_account", {}, {})
    monkeypatch.setattr("tools.preflight.boto3.client", lambda service: client)

    # When `make deploy` runs the pre-flight
    status = main(["--config-env", "dev"])

    # Then it stops the deploy with the reason on stderr
    assert status == 1
    assert "CreateApiGatewayLoggingRole=true" in capsys.readouterr().err
