"""The smoke command's AWS-only steps against botocore's models (Stubber): what a failing step prints is AWS's
own error, naming the denied action and resource, and an alarm's notification is read from its history."""

from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tools import smoke
from tools.smoke import Target, run_steps

DENIED = (
    "User: arn:aws:iam::123456789012:user/ci is not authorized to perform: apigateway:GET on resource: "
    "arn:aws:apigateway:eu-west-1::/account"
)


def aws_target(clients: dict[str, Any]) -> Target:
    return Target(
        stack_name="metered-ai-dev",
        api_url="https://example.invalid/live",
        region="eu-west-1",
        on_aws=True,
        partners_table="partners",
        usage_plan_ids={},
        webhook_secret=lambda: None,
        client=clients.__getitem__,
        alarm_name="metered-ai-dev-TierChangeFailuresAlarm-ABC",
    )


def client(service: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service, region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_a_denied_call_fails_its_step_with_the_action_and_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given credentials that may not read API Gateway's account settings
    apigateway = client("apigateway")
    monkeypatch.setattr(smoke, "STEPS", [smoke.STEPS[0]])
    lines: list[str] = []
    with Stubber(apigateway) as stubber:
        stubber.add_client_error("get_account", "AccessDeniedException", DENIED, 403)

        # When the smoke command runs its first step
        status = run_steps(aws_target({"apigateway": apigateway}), lines.append)

    # Then the step fails with AWS's words and the command exits non-zero
    assert status == 1
    assert f"FAIL account's API Gateway logging role: AccessDeniedException: {DENIED}" in lines


def test_a_region_without_a_logging_role_fails_saying_what_to_deploy(monkeypatch: pytest.MonkeyPatch) -> None:
    apigateway = client("apigateway")
    monkeypatch.setattr(smoke, "STEPS", [smoke.STEPS[0]])
    lines: list[str] = []
    with Stubber(apigateway) as stubber:
        stubber.add_response("get_account", {}, {})
        status = run_steps(aws_target({"apigateway": apigateway}), lines.append)

    assert status == 1
    assert any("CreateApiGatewayLoggingRole=true" in line for line in lines if line.startswith("FAIL"))


def test_an_alarm_set_to_alarm_passes_once_its_action_ran_and_is_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an alarm whose history shows its notification to the topic
    cloudwatch = client("cloudwatch")
    target = aws_target({"cloudwatch": cloudwatch})
    monkeypatch.setattr(smoke, "STEPS", [smoke.STEPS[6]])
    summary = "Successfully executed action arn:aws:sns:eu-west-1:123456789012:metered-ai-dev-AlertTopic"
    lines: list[str] = []
    with Stubber(cloudwatch) as stubber:
        stubber.add_response(
            "set_alarm_state", {}, {"AlarmName": target.alarm_name, "StateValue": "ALARM", "StateReason": ANY}
        )
        stubber.add_response(
            "describe_alarm_history",
            {
                "AlarmHistoryItems": [
                    {"AlarmName": target.alarm_name, "Timestamp": datetime.now(UTC), "HistorySummary": summary}
                ]
            },
            {"AlarmName": target.alarm_name, "HistoryItemType": "Action", "StartDate": ANY},
        )
        stubber.add_response(
            "set_alarm_state", {}, {"AlarmName": target.alarm_name, "StateValue": "OK", "StateReason": ANY}
        )

        # When the smoke command's alarm step runs
        status = run_steps(target, lines.append)
        stubber.assert_no_pending_responses()

    # Then it passes, quoting the action, and the alarm is back to OK
    assert status == 0
    assert f"PASS an alarm reaches the alert topic: {target.alarm_name}: {summary}" in lines


def test_the_chat_step_skips_embedding_models_listed_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a tier whose /v1/models lists an embedding model before its chat model
    sent: list[tuple[str, str, Any]] = []

    def fake_http(method: str, url: str, headers: dict[str, str] | None = None, body: Any = None) -> smoke.Answer:
        sent.append((method, url, body))
        if url.endswith("/v1/models"):
            return smoke.Answer(200, {"data": [{"id": "titan-embed-text-v2"}, {"id": "nova-micro"}]})
        return smoke.Answer(200, {"usage": {"total_tokens": 9}})

    monkeypatch.setattr(smoke, "http", fake_http)
    run = smoke.Run(target=aws_target({}), api_key="a-key")

    # When the chat step runs
    outcome = smoke.chat(run)

    # Then it chats with the chat model
    assert outcome == "nova-micro: 9 tokens"
    assert sent[-1][2]["model"] == "nova-micro"
