"""The offline API Gateway behaves as AWS documents: usage, usage-plan keys, and management throttling.

Every answer goes through a real boto3 client, so botocore's parser and service model judge its shape.
"""

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from http import HTTPStatus
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator
from moto import mock_aws
from moto.server import ThreadedMotoServer
from mypy_boto3_apigateway import APIGatewayClient
from mypy_boto3_apigateway.type_defs import PatchOperationTypeDef

from offline import apigateway_fidelity as fidelity
from offline.apigateway_fidelity import (
    GET_USAGE_MAX_LIMIT,
    RATE_LIMITS_ENV,
    USAGE_LAG_ENV,
    TokenBucket,
    UsagePlanKeyNotFound,
    install,
    ledger,
    set_management_rate_limits,
    set_usage_lag,
)
from tests.offline.fidelity.conftest import NO_RETRIES, REGION, FakeClocks

# --- helpers --------------------------------------------------------------------------------------------


def new_api(apigw: APIGatewayClient) -> str:
    return apigw.create_rest_api(name="metered")["id"]


def new_plan(
    apigw: APIGatewayClient,
    api_id: str,
    stage: str = "live",
    quota: dict[str, Any] | None = None,
) -> str:
    kwargs: dict[str, Any] = {"name": f"plan-{stage}", "apiStages": [{"apiId": api_id, "stage": stage}]}
    if quota is not None:
        kwargs["quota"] = quota
    return apigw.create_usage_plan(**kwargs)["id"]


def new_key(apigw: APIGatewayClient, name: str = "partner") -> str:
    return apigw.create_api_key(name=name, enabled=True)["id"]


def add_key(apigw: APIGatewayClient, plan_id: str, key_id: str) -> None:
    apigw.create_usage_plan_key(usagePlanId=plan_id, keyId=key_id, keyType="API_KEY")


def assert_matches_model(apigw: APIGatewayClient, operation: str, response: Any) -> None:
    """The parsed answer is valid against the operation's output shape in botocore's service model."""
    shape = apigw.meta.service_model.operation_model(operation).output_shape
    assert shape is not None
    body = {name: value for name, value in response.items() if name != "ResponseMetadata"}
    report = ParamValidator().validate(body, shape)
    assert not report.has_errors(), report.generate_report()


def error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


MONTHLY_100 = {"limit": 100, "period": "MONTH"}


# --- GetUsage -------------------------------------------------------------------------------------------


def test_get_usage_lists_every_plan_key_with_one_used_remaining_pair_per_day(apigw: APIGatewayClient) -> None:
    # Given a plan with a monthly quota and two keys, one of which has traffic
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)
    busy, idle = new_key(apigw, "busy"), new_key(apigw, "idle")
    add_key(apigw, plan_id, busy)
    add_key(apigw, plan_id, idle)
    ledger().record(plan_id, busy, date(2026, 3, 2), n=7)
    ledger().record(plan_id, busy, date(2026, 3, 4), n=3)

    # When the usage of 1 to 4 March is asked for
    usage = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-01", endDate="2026-03-04")

    # Then each key has four [used, remaining] pairs, remaining running down through the period
    assert_matches_model(apigw, "GetUsage", usage)
    assert usage["ResponseMetadata"]["HTTPStatusCode"] == HTTPStatus.OK
    assert (usage["usagePlanId"], usage["startDate"], usage["endDate"]) == (plan_id, "2026-03-01", "2026-03-04")
    assert usage["items"] == {
        busy: [[0, 100], [7, 93], [0, 93], [3, 90]],
        idle: [[0, 100], [0, 100], [0, 100], [0, 100]],
    }
    assert "position" not in usage


def test_remaining_resets_with_each_quota_period(apigw: APIGatewayClient) -> None:
    # Given a daily quota of 10 and traffic on two consecutive days
    plan_id = new_plan(apigw, new_api(apigw), quota={"limit": 10, "period": "DAY"})
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)
    ledger().record(plan_id, key_id, date(2026, 3, 31), n=4)
    ledger().record(plan_id, key_id, date(2026, 4, 1), n=9)

    # When usage across the month boundary is read
    usage = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-31", endDate="2026-04-01", keyId=key_id)

    # Then each day starts again from the full limit
    assert usage["items"] == {key_id: [[4, 6], [9, 1]]}


def test_get_usage_for_a_plan_without_quota_reports_zero_remaining(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw))
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)
    ledger().record(plan_id, key_id, date(2026, 3, 1), n=5)

    usage = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-01", endDate="2026-03-01")

    assert_matches_model(apigw, "GetUsage", usage)
    assert usage["items"] == {key_id: [[5, 0]]}


def test_get_usage_pages_over_keys_with_limit_and_position(apigw: APIGatewayClient) -> None:
    # Given five keys in one plan
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)
    key_ids = [new_key(apigw, f"partner-{n}") for n in range(5)]
    for key_id in key_ids:
        add_key(apigw, plan_id, key_id)

    # When they are read two at a time
    pages = []
    position: str | None = None
    while True:
        extra = {"position": position} if position else {}
        page = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-01", endDate="2026-03-02", limit=2, **extra)
        assert_matches_model(apigw, "GetUsage", page)
        pages.append(page)
        position = page.get("position")
        if position is None:
            break

    # Then three pages of at most two keys cover every key exactly once
    assert [len(page["items"]) for page in pages] == [2, 2, 1]
    seen = [key for page in pages for key in page["items"]]
    assert sorted(seen) == sorted(key_ids)
    # and botocore's own paginator, driven by the model's position/limit tokens, agrees (page by page:
    # build_full_result does not merge map results)
    paginated = apigw.get_paginator("get_usage").paginate(
        usagePlanId=plan_id, startDate="2026-03-01", endDate="2026-03-02", PaginationConfig={"PageSize": 2}
    )
    assert sorted(key for page in paginated for key in page["items"]) == sorted(key_ids)


def test_get_usage_defaults_to_25_keys_a_page(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)
    for n in range(26):
        add_key(apigw, plan_id, new_key(apigw, f"partner-{n}"))

    first = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-01", endDate="2026-03-01")

    assert len(first["items"]) == 25
    assert "position" in first


@pytest.mark.parametrize("limit", [0, GET_USAGE_MAX_LIMIT + 1])
def test_get_usage_refuses_a_limit_outside_1_to_500(apigw: APIGatewayClient, limit: int) -> None:
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)

    with pytest.raises(ClientError) as exc:
        apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-01", endDate="2026-03-01", limit=limit)

    assert error(exc) == ("BadRequestException", HTTPStatus.BAD_REQUEST)


def test_get_usage_accepts_the_maximum_limit(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)

    usage = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-01", endDate="2026-03-01", limit=500)

    assert usage["items"] == {}


@pytest.mark.parametrize(
    ("start", "end"),
    [("2026/03/01", "2026-03-02"), ("2026-02-30", "2026-03-02"), ("2026-03-02", "2026-03-01"), ("", "x")],
)
def test_get_usage_refuses_bad_dates(apigw: APIGatewayClient, start: str, end: str) -> None:
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)

    with pytest.raises(ClientError) as exc:
        apigw.get_usage(usagePlanId=plan_id, startDate=start, endDate=end)

    assert error(exc) == ("BadRequestException", HTTPStatus.BAD_REQUEST)


def test_get_usage_of_an_unknown_plan_is_not_found(apigw: APIGatewayClient) -> None:
    with pytest.raises(ClientError) as exc:
        apigw.get_usage(usagePlanId="nosuchplan", startDate="2026-03-01", endDate="2026-03-01")

    assert error(exc) == ("NotFoundException", HTTPStatus.NOT_FOUND)


def test_get_usage_filters_by_key_and_refuses_a_key_outside_the_plan(apigw: APIGatewayClient) -> None:
    api_id = new_api(apigw)
    plan_id = new_plan(apigw, api_id, quota=MONTHLY_100)
    member, outsider = new_key(apigw, "member"), new_key(apigw, "outsider")
    add_key(apigw, plan_id, member)
    add_key(apigw, plan_id, new_key(apigw, "other-member"))

    usage = apigw.get_usage(usagePlanId=plan_id, keyId=member, startDate="2026-03-01", endDate="2026-03-01")
    with pytest.raises(ClientError) as exc:
        apigw.get_usage(usagePlanId=plan_id, keyId=outsider, startDate="2026-03-01", endDate="2026-03-01")

    assert list(usage["items"]) == [member]
    assert error(exc) == ("NotFoundException", HTTPStatus.NOT_FOUND)


# --- UpdateUsage ----------------------------------------------------------------------------------------


def replace_remaining(value: int) -> list[PatchOperationTypeDef]:
    return [{"op": "replace", "path": "/remaining", "value": str(value)}]


def test_update_usage_sets_the_remaining_quota_from_today(apigw: APIGatewayClient, clocks: FakeClocks) -> None:
    # Given a monthly quota of 100 with 30 requests used on 2 March; today is 10 March
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)
    ledger().record(plan_id, key_id, date(2026, 3, 2), n=30)

    # When the remaining quota is extended to 500
    updated = apigw.update_usage(usagePlanId=plan_id, keyId=key_id, patchOperations=replace_remaining(500))

    # Then today reports 500 remaining while earlier days keep what they reported
    assert_matches_model(apigw, "UpdateUsage", updated)
    assert updated["items"][key_id][-1] == [0, 500]
    usage = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-09", endDate="2026-03-10")
    assert usage["items"] == {key_id: [[0, 70], [0, 500]]}

    # and later traffic spends the extension
    ledger().record(plan_id, key_id, date(2026, 3, 11), n=20)
    assert ledger().remaining(plan_id, key_id, datetime(2026, 3, 11, tzinfo=UTC)) == 480

    # and the next period starts from the plain limit again
    assert ledger().remaining(plan_id, key_id, datetime(2026, 4, 1, tzinfo=UTC)) == 100


def test_update_usage_can_remove_quota(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)

    apigw.update_usage(usagePlanId=plan_id, keyId=key_id, patchOperations=replace_remaining(0))
    result = ledger().try_consume(plan_id, key_id, datetime(2026, 3, 10, 13, tzinfo=UTC))

    assert not result.allowed
    assert result.remaining == 0


def test_update_usage_of_an_unknown_plan_or_a_key_outside_it_is_not_found(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)
    outsider = new_key(apigw)

    with pytest.raises(ClientError) as unknown_plan:
        apigw.update_usage(usagePlanId="nosuchplan", keyId=outsider, patchOperations=replace_remaining(1))
    with pytest.raises(ClientError) as not_in_plan:
        apigw.update_usage(usagePlanId=plan_id, keyId=outsider, patchOperations=replace_remaining(1))

    assert error(unknown_plan) == ("NotFoundException", HTTPStatus.NOT_FOUND)
    assert error(not_in_plan) == ("NotFoundException", HTTPStatus.NOT_FOUND)


@pytest.mark.parametrize(
    "operations",
    [
        [{"op": "add", "path": "/remaining", "value": "1"}],
        [{"op": "replace", "path": "/used", "value": "1"}],
        [{"op": "replace", "path": "/remaining", "value": "-1"}],
        [{"op": "replace", "path": "/remaining", "value": "lots"}],
        [],
    ],
)
def test_update_usage_refuses_anything_but_replace_remaining(
    apigw: APIGatewayClient, operations: list[PatchOperationTypeDef]
) -> None:
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)

    with pytest.raises(ClientError) as exc:
        apigw.update_usage(usagePlanId=plan_id, keyId=key_id, patchOperations=operations)

    assert error(exc) == ("BadRequestException", HTTPStatus.BAD_REQUEST)


def test_update_usage_of_a_plan_without_quota_is_refused(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw))
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)

    with pytest.raises(ClientError) as exc:
        apigw.update_usage(usagePlanId=plan_id, keyId=key_id, patchOperations=replace_remaining(5))

    assert error(exc) == ("BadRequestException", HTTPStatus.BAD_REQUEST)


# --- Usage-plan keys ------------------------------------------------------------------------------------


def test_a_key_cannot_join_a_second_plan_on_the_same_stage(apigw: APIGatewayClient) -> None:
    # Given a key in the free plan of the live stage, and a pro plan on the same stage
    api_id = new_api(apigw)
    free, pro = new_plan(apigw, api_id, "live"), new_plan(apigw, api_id, "live")
    key_id = new_key(apigw)
    add_key(apigw, free, key_id)

    # When the key is added to the pro plan as well
    with pytest.raises(ClientError) as exc:
        add_key(apigw, pro, key_id)

    # Then AWS's one-plan-per-stage rule refuses it, and nothing was half-added
    assert error(exc) == ("ConflictException", HTTPStatus.CONFLICT)
    assert apigw.get_usage_plan_keys(usagePlanId=pro)["items"] == []
    assert [plan["id"] for plan in apigw.get_usage_plans(keyId=key_id)["items"]] == [free]


def test_concurrent_additions_to_plans_of_one_stage_let_exactly_one_through(
    apigw: APIGatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given eight plans on the live stage, one key, and a slow moment between the check and the addition
    api_id = new_api(apigw)
    plan_ids = [new_plan(apigw, api_id) for _ in range(8)]
    key_id = new_key(apigw)
    add_after_a_pause = fidelity._ORIGINAL_CREATE_USAGE_PLAN_KEY

    def slow_add(*args: Any) -> Any:
        time.sleep(0.01)
        return add_after_a_pause(*args)

    monkeypatch.setattr(fidelity, "_ORIGINAL_CREATE_USAGE_PLAN_KEY", slow_add)
    outcomes: list[str] = []
    lock = threading.Lock()

    def join(plan_id: str) -> None:
        try:
            add_key(apigw, plan_id, key_id)
            outcome = "added"
        except ClientError as exc:
            outcome = exc.response["Error"]["Code"]
        with lock:
            outcomes.append(outcome)

    # When the key is added to all of them at once
    threads = [threading.Thread(target=join, args=(plan_id,)) for plan_id in plan_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then one addition wins and every other is a conflict
    assert sorted(outcomes) == ["ConflictException"] * 7 + ["added"]
    assert len(apigw.get_usage_plans(keyId=key_id)["items"]) == 1


def test_a_key_can_join_plans_on_different_stages(apigw: APIGatewayClient) -> None:
    api_id = new_api(apigw)
    live, beta = new_plan(apigw, api_id, "live"), new_plan(apigw, api_id, "beta")
    key_id = new_key(apigw)
    add_key(apigw, live, key_id)

    created = apigw.create_usage_plan_key(usagePlanId=beta, keyId=key_id, keyType="API_KEY")

    assert_matches_model(apigw, "CreateUsagePlanKey", created)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == HTTPStatus.CREATED
    assert sorted(plan["id"] for plan in apigw.get_usage_plans(keyId=key_id)["items"]) == sorted([live, beta])


def test_adding_a_key_twice_to_one_plan_is_a_conflict(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw))
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)

    with pytest.raises(ClientError) as exc:
        add_key(apigw, plan_id, key_id)

    assert error(exc) == ("ConflictException", HTTPStatus.CONFLICT)


def test_adding_an_unknown_key_or_to_an_unknown_plan_is_not_found(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw))
    key_id = new_key(apigw)

    with pytest.raises(ClientError) as unknown_key:
        add_key(apigw, plan_id, "nosuchkey")
    with pytest.raises(ClientError) as unknown_plan:
        add_key(apigw, "nosuchplan", key_id)

    assert error(unknown_key) == ("NotFoundException", HTTPStatus.NOT_FOUND)
    assert error(unknown_plan) == ("NotFoundException", HTTPStatus.NOT_FOUND)


def test_removing_a_key_that_is_not_in_the_plan_is_not_found(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw))
    key_id = new_key(apigw)

    with pytest.raises(ClientError) as not_in_plan:
        apigw.delete_usage_plan_key(usagePlanId=plan_id, keyId=key_id)
    with pytest.raises(ClientError) as unknown_plan:
        apigw.delete_usage_plan_key(usagePlanId="nosuchplan", keyId=key_id)

    assert error(not_in_plan) == ("NotFoundException", HTTPStatus.NOT_FOUND)
    assert error(unknown_plan) == ("NotFoundException", HTTPStatus.NOT_FOUND)


def test_moving_a_key_between_plans_of_one_stage_works_once_it_has_left(apigw: APIGatewayClient) -> None:
    api_id = new_api(apigw)
    free, pro = new_plan(apigw, api_id), new_plan(apigw, api_id)
    key_id = new_key(apigw)
    add_key(apigw, free, key_id)

    deleted = apigw.delete_usage_plan_key(usagePlanId=free, keyId=key_id)
    add_key(apigw, pro, key_id)

    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == HTTPStatus.ACCEPTED
    assert [plan["id"] for plan in apigw.get_usage_plans(keyId=key_id)["items"]] == [pro]


def test_deleting_an_api_key_removes_it_from_every_plan(apigw: APIGatewayClient) -> None:
    api_id = new_api(apigw)
    live, beta = new_plan(apigw, api_id, "live"), new_plan(apigw, api_id, "beta")
    key_id = new_key(apigw)
    add_key(apigw, live, key_id)
    add_key(apigw, beta, key_id)

    apigw.delete_api_key(apiKey=key_id)

    assert apigw.get_usage_plan_keys(usagePlanId=live)["items"] == []
    assert apigw.get_usage_plan_keys(usagePlanId=beta)["items"] == []
    assert apigw.get_usage_plans(keyId=key_id)["items"] == []
    with pytest.raises(ClientError) as exc:
        apigw.delete_api_key(apiKey=key_id)
    assert error(exc) == ("NotFoundException", HTTPStatus.NOT_FOUND)


def test_deleting_an_unknown_usage_plan_is_not_found(apigw: APIGatewayClient) -> None:
    with pytest.raises(ClientError) as exc:
        apigw.delete_usage_plan(usagePlanId="nosuchplan")

    assert error(exc) == ("NotFoundException", HTTPStatus.NOT_FOUND)


def test_a_deleted_plan_no_longer_holds_its_keys_on_the_stage(apigw: APIGatewayClient) -> None:
    api_id = new_api(apigw)
    old, new = new_plan(apigw, api_id), new_plan(apigw, api_id)
    key_id = new_key(apigw)
    add_key(apigw, old, key_id)

    apigw.delete_usage_plan(usagePlanId=old)
    add_key(apigw, new, key_id)

    assert [plan["id"] for plan in apigw.get_usage_plans(keyId=key_id)["items"]] == [new]


# --- Quotas through the ledger --------------------------------------------------------------------------


def plan_with_key(apigw: APIGatewayClient, quota: dict[str, Any] | None) -> tuple[str, str]:
    plan_id = new_plan(apigw, new_api(apigw), quota=quota)
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)
    return plan_id, key_id


def test_daily_quota_refuses_the_request_over_the_limit_until_midnight_utc(apigw: APIGatewayClient) -> None:
    plan_id, key_id = plan_with_key(apigw, {"limit": 3, "period": "DAY"})
    evening = datetime(2026, 3, 10, 23, 59, 59, tzinfo=UTC)

    results = [ledger().try_consume(plan_id, key_id, evening) for _ in range(4)]
    after_midnight = ledger().try_consume(plan_id, key_id, datetime(2026, 3, 11, tzinfo=UTC))

    assert [result.allowed for result in results] == [True, True, True, False]
    assert [result.remaining for result in results] == [2, 1, 0, 0]
    assert results[-1].resets_at == datetime(2026, 3, 11, tzinfo=UTC)
    assert after_midnight.allowed
    assert ledger().used_on(plan_id, key_id, date(2026, 3, 10)) == 3


def test_weekly_quota_resets_on_monday_midnight_utc(apigw: APIGatewayClient) -> None:
    plan_id, key_id = plan_with_key(apigw, {"limit": 2, "period": "WEEK"})
    sunday_night = datetime(2026, 3, 15, 23, 59, tzinfo=UTC)  # 2026-03-16 is a Monday

    sunday = [ledger().try_consume(plan_id, key_id, sunday_night).allowed for _ in range(3)]
    monday = ledger().try_consume(plan_id, key_id, datetime(2026, 3, 16, tzinfo=UTC))

    assert sunday == [True, True, False]
    assert monday.allowed
    assert ledger().used_in_period(plan_id, key_id, datetime(2026, 3, 22, tzinfo=UTC)) == 1


def test_offset_shrinks_only_the_first_period(apigw: APIGatewayClient, clocks: FakeClocks) -> None:
    # Given a monthly quota of 10 with offset 4, created on 10 March (the fake wall clock)
    plan_id, key_id = plan_with_key(apigw, {"limit": 10, "offset": 4, "period": "MONTH"})

    # When the key spends all it can in March, then in April
    march = [ledger().try_consume(plan_id, key_id, datetime(2026, 3, 20, tzinfo=UTC)) for _ in range(11)]
    april = [ledger().try_consume(plan_id, key_id, datetime(2026, 4, 2, tzinfo=UTC)) for _ in range(11)]

    # Then March allows 10 - 4 and April the full 10
    assert sum(result.allowed for result in march) == 6
    assert sum(result.allowed for result in april) == 10
    usage = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-20", endDate="2026-04-02")
    assert usage["items"][key_id][0] == [6, 0]
    assert usage["items"][key_id][-1] == [10, 0]


def test_plan_quota_changed_through_update_usage_plan_is_enforced(apigw: APIGatewayClient) -> None:
    plan_id, key_id = plan_with_key(apigw, {"limit": 100, "period": "DAY"})
    at = datetime(2026, 3, 10, 13, tzinfo=UTC)

    apigw.update_usage_plan(
        usagePlanId=plan_id, patchOperations=[{"op": "replace", "path": "/quota/limit", "value": "1"}]
    )

    assert [ledger().try_consume(plan_id, key_id, at).allowed for _ in range(2)] == [True, False]


def test_a_plan_without_quota_meters_but_never_refuses(apigw: APIGatewayClient) -> None:
    plan_id, key_id = plan_with_key(apigw, None)
    at = datetime(2026, 3, 10, 13, tzinfo=UTC)

    results = [ledger().try_consume(plan_id, key_id, at) for _ in range(50)]

    assert all(result.allowed and result.remaining is None and result.resets_at is None for result in results)
    assert ledger().used_on(plan_id, key_id, at.date()) == 50
    assert ledger().remaining(plan_id, key_id, at) is None


def test_consuming_for_a_key_outside_the_plan_raises(apigw: APIGatewayClient) -> None:
    plan_id = new_plan(apigw, new_api(apigw), quota=MONTHLY_100)
    outsider = new_key(apigw)
    at = datetime(2026, 3, 10, tzinfo=UTC)

    with pytest.raises(UsagePlanKeyNotFound):
        ledger().try_consume(plan_id, outsider, at)
    with pytest.raises(UsagePlanKeyNotFound):
        ledger().try_consume("nosuchplan", outsider, at)


def test_concurrent_consumers_never_exceed_the_quota(apigw: APIGatewayClient) -> None:
    plan_id, key_id = plan_with_key(apigw, {"limit": 50, "period": "DAY"})
    at = datetime(2026, 3, 10, 13, tzinfo=UTC)
    allowed: list[bool] = []
    lock = threading.Lock()

    def spend() -> None:
        for _ in range(10):
            ok = ledger().try_consume(plan_id, key_id, at).allowed
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=spend) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert allowed.count(True) == 50
    assert ledger().used_on(plan_id, key_id, at.date()) == 50


def test_moto_reset_clears_the_ledger(clocks: FakeClocks) -> None:
    with mock_aws():
        apigw = boto3.client("apigateway", region_name=REGION)
        plan_id, key_id = plan_with_key(apigw, MONTHLY_100)
        ledger().record(plan_id, key_id, date(2026, 3, 1), n=5)
        assert ledger().used_on(plan_id, key_id, date(2026, 3, 1)) == 5

    with mock_aws():
        assert ledger().used_on(plan_id, key_id, date(2026, 3, 1)) == 0


# --- Token buckets --------------------------------------------------------------------------------------


class Ticker:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_the_burst_then_refills_at_the_rate() -> None:
    clock = Ticker()
    bucket = TokenBucket(rate=5, burst=10, clock=clock)

    burst = [bucket.try_take() for _ in range(11)]
    clock.now += 0.2
    after_one_token = [bucket.try_take() for _ in range(2)]
    clock.now += 1.0
    after_a_second = [bucket.try_take() for _ in range(6)]

    assert burst == [True] * 10 + [False]
    assert after_one_token == [True, False]
    assert after_a_second == [True] * 5 + [False]


def test_token_bucket_never_holds_more_than_the_burst() -> None:
    clock = Ticker()
    bucket = TokenBucket(rate=100, burst=3, clock=clock)

    clock.now += 3600

    assert [bucket.try_take() for _ in range(4)] == [True, True, True, False]


def test_token_bucket_says_how_long_until_a_token() -> None:
    clock = Ticker()
    bucket = TokenBucket(rate=1 / 20, burst=1, clock=clock)

    assert bucket.seconds_until_available() == 0.0
    assert bucket.try_take()
    assert bucket.seconds_until_available() == pytest.approx(20.0)
    clock.now += 15
    assert bucket.seconds_until_available() == pytest.approx(5.0)
    assert TokenBucket(rate=0, burst=0, clock=clock).seconds_until_available() == float("inf")


def test_token_bucket_ignores_a_clock_that_steps_back() -> None:
    clock = Ticker()
    clock.now = 100.0
    bucket = TokenBucket(rate=1, burst=2, clock=clock)
    assert bucket.try_take()

    clock.now = 50.0
    assert bucket.try_take()
    clock.now = 51.0

    assert bucket.try_take()
    assert not bucket.try_take()


def test_token_bucket_is_thread_safe() -> None:
    bucket = TokenBucket(rate=1, burst=100, clock=Ticker())
    taken: list[bool] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(50):
            ok = bucket.try_take()
            with lock:
                taken.append(ok)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert taken.count(True) == 100


# --- Management-API rate limits -------------------------------------------------------------------------


@pytest.fixture
def throttled(clocks: FakeClocks) -> FakeClocks:
    set_management_rate_limits(True)
    return clocks


def test_create_api_key_is_limited_to_5_a_second(apigw: APIGatewayClient, throttled: FakeClocks) -> None:
    for n in range(5):
        new_key(apigw, f"k{n}")

    with pytest.raises(ClientError) as exc:
        new_key(apigw, "k5")
    throttled.advance(0.2)
    new_key(apigw, "k6")

    assert error(exc) == ("TooManyRequestsException", HTTPStatus.TOO_MANY_REQUESTS)
    assert exc.value.response["retryAfterSeconds"] == "1"
    assert len(apigw.get_api_keys()["items"]) == 6


def test_delete_api_key_is_limited_to_5_a_second(apigw: APIGatewayClient, throttled: FakeClocks) -> None:
    key_ids = [new_key(apigw, f"k{n}") for n in range(5)]
    throttled.advance(10)  # refill after the creates
    key_ids.append(new_key(apigw, "k5"))
    throttled.advance(10)

    for key_id in key_ids[:5]:
        apigw.delete_api_key(apiKey=key_id)
    with pytest.raises(ClientError) as exc:
        apigw.delete_api_key(apiKey=key_ids[5])

    assert error(exc) == ("TooManyRequestsException", HTTPStatus.TOO_MANY_REQUESTS)


def test_update_usage_plan_is_limited_to_one_every_20_seconds(apigw: APIGatewayClient, throttled: FakeClocks) -> None:
    plan_id = new_plan(apigw, new_api(apigw))
    rename: list[PatchOperationTypeDef] = [{"op": "replace", "path": "/name", "value": "renamed"}]

    apigw.update_usage_plan(usagePlanId=plan_id, patchOperations=rename)
    throttled.advance(19.9)
    with pytest.raises(ClientError) as exc:
        apigw.update_usage_plan(usagePlanId=plan_id, patchOperations=rename)
    throttled.advance(0.1)
    apigw.update_usage_plan(usagePlanId=plan_id, patchOperations=rename)

    assert error(exc) == ("TooManyRequestsException", HTTPStatus.TOO_MANY_REQUESTS)
    assert exc.value.response["retryAfterSeconds"] == "1"


def test_every_call_shares_10_a_second_with_a_burst_of_40(apigw: APIGatewayClient, throttled: FakeClocks) -> None:
    # Given a key created (one of the 40) and 39 reads
    new_key(apigw)
    for _ in range(39):
        apigw.get_usage_plans()

    # When one more call of any kind is made
    with pytest.raises(ClientError) as exc:
        apigw.get_api_keys()

    # Then it is throttled until a tenth of a second has refilled one token
    assert error(exc) == ("TooManyRequestsException", HTTPStatus.TOO_MANY_REQUESTS)
    throttled.advance(0.1)
    apigw.get_api_keys()
    with pytest.raises(ClientError):
        apigw.get_api_keys()


def test_a_call_refused_by_its_own_limit_does_not_spend_the_shared_pool(
    apigw: APIGatewayClient, throttled: FakeClocks
) -> None:
    for n in range(5):
        new_key(apigw, f"k{n}")
    for _ in range(10):
        with pytest.raises(ClientError):
            new_key(apigw, "refused")

    # 5 creates spent 5 of the 40; the 10 refusals spent nothing
    for _ in range(35):
        apigw.get_usage_plans()
    with pytest.raises(ClientError):
        apigw.get_usage_plans()


def test_limits_are_per_account_and_region(apigw: APIGatewayClient, throttled: FakeClocks) -> None:
    for n in range(5):
        new_key(apigw, f"k{n}")
    elsewhere = boto3.client("apigateway", region_name="eu-west-1", config=NO_RETRIES)

    elsewhere.create_api_key(name="k-eu")
    with pytest.raises(ClientError):
        new_key(apigw, "k5")


def test_botocore_standard_retries_wait_out_the_throttle(
    apigw: APIGatewayClient, throttled: FakeClocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the CreateApiKey bucket is empty, and botocore's backoff sleeps on the fake clock (at least
    # a second, so its random delay cannot fall short of the 0.2 s a token takes)
    for n in range(5):
        new_key(apigw, f"k{n}")
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: throttled.advance(max(seconds, 1.0)))
    retrying = boto3.client(
        "apigateway", region_name=REGION, config=Config(retries={"mode": "standard", "total_max_attempts": 3})
    )
    attempts = count_attempts(retrying, "CreateApiKey")

    # When a key is created through a client in standard retry mode
    created = retrying.create_api_key(name="patient", enabled=True)

    # Then the throttled attempt was retried and the key exists once
    assert sum(attempts) == 2
    assert created["ResponseMetadata"]["RetryAttempts"] == 1
    assert [key["name"] for key in apigw.get_api_keys()["items"]].count("patient") == 1


def test_exhausted_retries_surface_as_too_many_requests(
    apigw: APIGatewayClient, throttled: FakeClocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty CreateApiKey bucket and a clock that does not move while botocore backs off
    for n in range(5):
        new_key(apigw, f"k{n}")
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda _seconds: None)
    retrying = boto3.client(
        "apigateway", region_name=REGION, config=Config(retries={"mode": "standard", "total_max_attempts": 3})
    )
    attempts = count_attempts(retrying, "CreateApiKey")

    # When a key is created
    with pytest.raises(ClientError) as exc:
        retrying.create_api_key(name="impatient")

    # Then botocore tried three times and gave up with AWS's throttling error
    assert sum(attempts) == 3
    assert error(exc) == ("TooManyRequestsException", HTTPStatus.TOO_MANY_REQUESTS)
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert exc.value.response["ResponseMetadata"]["MaxAttemptsReached"] is True


def count_attempts(client: Any, operation: str) -> list[int]:
    attempts: list[int] = []
    client.meta.events.register(f"before-send.apigateway.{operation}", lambda **_: attempts.append(1))
    return attempts


def test_rate_limits_are_on_by_default_after_install(apigw: APIGatewayClient, clocks: FakeClocks) -> None:
    set_management_rate_limits(None)

    for n in range(5):
        new_key(apigw, f"k{n}")
    with pytest.raises(ClientError) as exc:
        new_key(apigw, "k5")

    assert error(exc) == ("TooManyRequestsException", HTTPStatus.TOO_MANY_REQUESTS)


def test_environment_switch_turns_rate_limits_off(
    apigw: APIGatewayClient, clocks: FakeClocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_management_rate_limits(None)
    monkeypatch.setenv(RATE_LIMITS_ENV, "0")

    key_ids = [new_key(apigw, f"k{n}") for n in range(50)]

    assert len(set(key_ids)) == 50


# --- Server mode ----------------------------------------------------------------------------------------


@pytest.fixture
def moto_server(clocks: FakeClocks) -> Iterator[str]:
    # install() (via clocks) runs before the server builds its routes on the first request.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    yield url
    requests.post(f"{url}/moto-api/reset", timeout=10)
    server.stop()


def test_get_usage_and_the_conflict_work_over_http(moto_server: str) -> None:
    # Given a plan and a key created over HTTP against the moto server in this process
    apigw = boto3.client(
        "apigateway",
        region_name=REGION,
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=NO_RETRIES,
    )
    api_id = new_api(apigw)
    plan_id, other_plan = new_plan(apigw, api_id, quota=MONTHLY_100), new_plan(apigw, api_id)
    key_id = new_key(apigw)
    add_key(apigw, plan_id, key_id)
    ledger().record(plan_id, key_id, date(2026, 3, 1), n=12)

    # When usage is read, and the key is added to a second plan of the same stage
    usage = apigw.get_usage(usagePlanId=plan_id, startDate="2026-03-01", endDate="2026-03-02")
    with pytest.raises(ClientError) as exc:
        add_key(apigw, other_plan, key_id)

    # Then both answers are AWS's
    assert_matches_model(apigw, "GetUsage", usage)
    assert usage["items"] == {key_id: [[12, 88], [0, 88]]}
    assert error(exc) == ("ConflictException", HTTPStatus.CONFLICT)


def test_throttling_works_over_http(moto_server: str, clocks: FakeClocks) -> None:
    set_management_rate_limits(True)
    apigw = boto3.client(
        "apigateway",
        region_name=REGION,
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=NO_RETRIES,
    )
    for n in range(5):
        new_key(apigw, f"k{n}")

    with pytest.raises(ClientError) as exc:
        new_key(apigw, "k5")

    assert error(exc) == ("TooManyRequestsException", HTTPStatus.TOO_MANY_REQUESTS)


def test_install_is_idempotent(clocks: FakeClocks) -> None:
    install()
    install()

    with mock_aws():
        apigw = boto3.client("apigateway", region_name=REGION, config=NO_RETRIES)
        plan_id, key_id = plan_with_key(apigw, MONTHLY_100)
        with pytest.raises(ClientError) as exc:
            add_key(apigw, plan_id, key_id)

    assert error(exc) == ("ConflictException", HTTPStatus.CONFLICT)


# --- GetUsage lags behind the requests -------------------------------------------------------------------


@pytest.fixture
def usage_lag(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """GetUsage 30 minutes behind, as AWS allows ("usage data can be up to 30 minutes behind")."""
    monkeypatch.delenv(USAGE_LAG_ENV, raising=False)
    set_usage_lag(1800)
    yield
    set_usage_lag(None)


@pytest.mark.usefixtures("usage_lag")
def test_get_usage_reports_requests_only_once_they_are_older_than_the_lag(
    apigw: APIGatewayClient, clocks: FakeClocks
) -> None:
    # Given a daily quota of 10, and 6 requests admitted just now (12:00)
    plan_id, key_id = plan_with_key(apigw, {"limit": 10, "period": "DAY"})
    results = [ledger().try_consume(plan_id, key_id, clocks.now()) for _ in range(6)]
    assert [result.remaining for result in results] == [9, 8, 7, 6, 5, 4]

    # When GetUsage is asked 29 minutes later, then 31 minutes later
    clocks.advance(29 * 60)
    early = apigw.get_usage(usagePlanId=plan_id, keyId=key_id, startDate="2026-03-10", endDate="2026-03-10")
    clocks.advance(2 * 60)
    late = apigw.get_usage(usagePlanId=plan_id, keyId=key_id, startDate="2026-03-10", endDate="2026-03-10")

    # Then it first shows none of them, then all of them; the quota applied in real time all along
    assert early["items"] == {key_id: [[0, 10]]}
    assert late["items"] == {key_id: [[6, 4]]}
    assert ledger().remaining(plan_id, key_id, clocks.now()) == 4


def test_get_usage_is_exact_when_no_lag_is_set(
    apigw: APIGatewayClient, clocks: FakeClocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no METERED_AI_OFFLINE_USAGE_LAG_SECONDS (make local's default)
    monkeypatch.delenv(USAGE_LAG_ENV, raising=False)
    plan_id, key_id = plan_with_key(apigw, {"limit": 10, "period": "DAY"})
    ledger().try_consume(plan_id, key_id, clocks.now())

    # When GetUsage is asked at once, Then it shows the request
    usage = apigw.get_usage(usagePlanId=plan_id, keyId=key_id, startDate="2026-03-10", endDate="2026-03-10")
    assert usage["items"] == {key_id: [[1, 9]]}


def test_the_usage_lag_is_read_from_the_environment(
    apigw: APIGatewayClient, clocks: FakeClocks, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(USAGE_LAG_ENV, "60")
    plan_id, key_id = plan_with_key(apigw, {"limit": 10, "period": "DAY"})
    ledger().try_consume(plan_id, key_id, clocks.now())

    usage = apigw.get_usage(usagePlanId=plan_id, keyId=key_id, startDate="2026-03-10", endDate="2026-03-10")
    clocks.advance(61)
    later = apigw.get_usage(usagePlanId=plan_id, keyId=key_id, startDate="2026-03-10", endDate="2026-03-10")

    assert (usage["items"], later["items"]) == ({key_id: [[0, 10]]}, {key_id: [[1, 9]]})


# --- The account's API key ceiling ----------------------------------------------------------------------


@pytest.fixture
def ceiling_of_two() -> Iterator[None]:
    fidelity.set_api_key_limit(2)
    yield
    fidelity.set_api_key_limit(None)


@pytest.mark.usefixtures("ceiling_of_two")
def test_create_api_key_past_the_ceiling_is_limit_exceeded_naming_api_keys(apigw: APIGatewayClient) -> None:
    # Given an account holding as many keys as it may
    first, _ = new_key(apigw, "one"), new_key(apigw, "two")

    # When a third key is asked for
    with pytest.raises(ClientError) as refused:
        new_key(apigw, "three")

    # Then API Gateway's quota answer: LimitExceededException, 429, a message naming API keys, no Retry-After
    assert error(refused) == ("LimitExceededException", HTTPStatus.TOO_MANY_REQUESTS)
    assert "API Keys" in refused.value.response["Error"]["Message"]
    assert "retry-after" not in refused.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert len(apigw.get_api_keys()["items"]) == 2

    # And deleting a key makes room for one
    apigw.delete_api_key(apiKey=first)
    new_key(apigw, "three")


def test_the_ceiling_comes_from_the_environment_and_defaults_to_10000(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fidelity.API_KEY_LIMIT_ENV, raising=False)
    assert fidelity._api_key_limit() == 10_000
    monkeypatch.setenv(fidelity.API_KEY_LIMIT_ENV, "3")
    assert fidelity._api_key_limit() == 3
