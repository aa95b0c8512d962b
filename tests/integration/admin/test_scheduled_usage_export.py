"""UsageExportFunction on the emulated stack: at each period close it writes the closed periods' exports to
UsageExportBucket as CSV and JSON, the same bytes on every re-run; a failure raises (Lambda retries, then DLQ)."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.exceptions import ClientError

from core.admin.service import scheduled_export
from core.errors import DomainError
from core.settings import forget_settings
from handlers import usage_export
from offline import apigateway_fidelity
from offline.provision import ProvisionedStack
from offline.template import StackTemplate
from tests.faults import fails_once
from tests.integration.admin.conftest import sign_up
from tests.lambda_events import LambdaContext


@pytest.fixture
def export_env(
    signup_env: None, stack: ProvisionedStack, template: StackTemplate, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """UsageExportFunction's environment as the template sets it; the bucket's name."""
    variables = template.resources["UsageExportFunction"]["Properties"]["Environment"]["Variables"]
    for name, value in stack.environment(variables).items():
        monkeypatch.setenv(name, value)
    forget_settings()
    scheduled_export.cache_clear()
    yield stack.physical_ids["UsageExportBucket"]
    forget_settings()
    scheduled_export.cache_clear()


def run(event: dict[str, object]) -> dict[str, object]:
    result: dict[str, object] = usage_export.handler(event, LambdaContext("UsageExportFunction"))
    return result


def objects(bucket: str) -> dict[str, bytes]:
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {item["Key"]: s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read() for item in listed}


def test_the_days_run_exports_yesterday_as_csv_and_json_and_a_rerun_writes_the_same_bytes(
    export_env: str, stack: ProvisionedStack
) -> None:
    # Given a free partner (DAY quota) that made 4 requests yesterday
    partner_id = sign_up("Yesterday Ltd", "free")
    today = datetime.now(UTC).replace(hour=0, minute=45, second=0, microsecond=0)
    yesterday = (today - timedelta(days=1)).date()
    key_id = boto3.client("dynamodb").get_item(
        TableName=stack.physical_ids["PartnersTable"], Key={"pk": {"S": f"PARTNER#{partner_id}"}}
    )["Item"]["api_key_id"]["S"]
    apigateway_fidelity.ledger().record(stack.plan_ids_by_tier["free"], key_id, yesterday, 4)

    # When the schedule fires at 00:45 UTC today
    event = {"scheduled_time": today.strftime("%Y-%m-%dT%H:%M:%SZ"), "execution_id": uuid.uuid4().hex}
    first = run(event)

    # Then yesterday's DAY export is in the bucket, once per format, with the partner's requests
    written = objects(export_env)
    day = f"usage/day/{yesterday.isoformat()}"
    assert {f"{day}.csv", f"{day}.json"} <= set(written)
    report = json.loads(written[f"{day}.json"])
    [row] = [row for row in report["rows"] if row["partner_id"] == partner_id]
    assert (row["requests"], report["quota_periods"]) == (4, ["DAY"])
    assert written[f"{day}.csv"].decode().startswith('"partner_id","name"')
    head = boto3.client("s3").head_object(Bucket=export_env, Key=f"{day}.csv")
    assert head["ContentType"] == "text/csv; charset=utf-8"
    # And a re-run (a retried delivery) writes the same bytes to the same keys
    scheduled_export.cache_clear()
    assert run(event) == first
    assert objects(export_env) == written


def test_a_period_on_demand_is_exported_for_each_of_its_quota_periods(export_env: str) -> None:
    sign_up("Any Ltd", "free")
    month = datetime.now(UTC).strftime("%Y-%m")

    result = run({"period": month})

    assert [item["key"] for item in result["objects"]] == [f"usage/month/{month}.csv", f"usage/month/{month}.json"]  # type: ignore[index, union-attr]


@pytest.mark.parametrize(
    ("service", "operation"),
    [("api-gateway", "GetUsagePlans"), ("api-gateway", "GetUsage"), ("dynamodb", "Scan"), ("s3", "PutObject")],
)
def test_each_aws_call_failing_once_fails_the_run_for_lambdas_retry_which_writes_it(
    export_env: str, service: str, operation: str
) -> None:
    sign_up("Retry Ltd", "free")
    event = {"period": datetime.now(UTC).date().isoformat()}

    # When PutObject fails once (an error botocore does not retry), in a new execution environment
    scheduled_export.cache_clear()
    with fails_once(service, operation, "AccessDeniedException", 403), pytest.raises((ClientError, DomainError)):
        run(event)

    # Then the run raised (Lambda retries the event), and the retry writes every object

    scheduled_export.cache_clear()
    result = run(event)
    assert len(result["objects"]) >= 2  # type: ignore[arg-type]
    assert set(objects(export_env)) >= {item["key"] for item in result["objects"]}  # type: ignore[union-attr]
