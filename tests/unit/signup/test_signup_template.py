"""What template.yaml must keep true for signup: no key listing in its role, a stage limit that fits the
account's management-API pool, and a scheduled sweep with a DLQ and alarms like every async path."""

from typing import Any

from offline.template import load_template

# "API Gateway quotas for creating, deploying and managing an API": every management call counts.
ACCOUNT_CALLS_PER_SECOND = 10
ACCOUNT_CALLS_BURST = 40
CALLS_PER_SIGNUP = 3  # CreateApiKey, CreateUsagePlanKey, UpdateApiKey


def statements(function: str) -> list[dict[str, Any]]:
    template = load_template()
    found: list[dict[str, Any]] = []
    for policy in template.resources[function]["Properties"]["Policies"]:
        found += policy["Statement"]
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_signup_role_cannot_list_the_accounts_keys() -> None:
    # GetApiKeys on /apikeys (with includeValues) reads every key value in the account and Region.
    for statement in statements("SignupFunction"):
        if "apigateway:GET" in as_list(statement.get("Action", [])):  # a conditional (!If) statement has none
            assert not any(str(resource).endswith("::/apikeys") for resource in as_list(statement["Resource"]))


def test_the_default_signup_limit_fits_the_accounts_management_pool() -> None:
    parameters = load_template().parameters

    assert float(parameters["SignupRateLimit"]) * CALLS_PER_SIGNUP <= ACCOUNT_CALLS_PER_SECOND
    assert int(parameters["SignupBurstLimit"]) * CALLS_PER_SIGNUP <= ACCOUNT_CALLS_BURST


def test_the_sweep_runs_on_a_schedule_with_a_dlq_a_failure_destination_and_alarms() -> None:
    template = load_template()
    sweep = template.resources["SignupSweepFunction"]["Properties"]
    schedule = sweep["Events"]["SweepSchedule"]
    assert schedule["Type"] == "ScheduleV2"
    assert schedule["Properties"]["OmitName"] is True
    dlq_arn = schedule["Properties"]["DeadLetterConfig"]["Arn"]
    assert sweep["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Destination"] == dlq_arn
    alarms = template.of_type("AWS::CloudWatch::Alarm")
    assert {"SignupSweepDeadLetterAlarm", "SignupSweepErrorsAlarm"} <= set(alarms)
    # It may delete this stack's keys, and never read one
    actions = {
        action for statement in statements("SignupSweepFunction") for action in as_list(statement.get("Action", []))
    }
    assert "apigateway:GET" not in actions
