"""ImportApiKeys in the offline API Gateway, as AWS documents it (moto has none): the API key file format,
`ids` and `warnings`, failonwarnings all or nothing, a value imported again overwrites its key, and the key
ceiling. Requests go through a real boto3 client, so botocore's service model shapes them and parses the
answers; Stubber pins the request our callers would send. CreateApiKey with a `value` (the console's key import)
is pinned too."""

import base64

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from mypy_boto3_apigateway import APIGatewayClient
from pydantic import SecretStr

from core.adapters.apigateway import ApiGateway
from core.errors import ApiKeyCeilingReached, KeyValueInUse
from offline import apigateway_fidelity as fidelity

VALUE = "k" * 25
OTHER = "o" * 30


def import_keys(apigw: APIGatewayClient, text: str, fail_on_warnings: bool = True) -> dict[str, list[str]]:
    answer = apigw.import_api_keys(body=text.encode(), format="csv", failOnWarnings=fail_on_warnings)
    return {"ids": list(answer.get("ids", [])), "warnings": list(answer.get("warnings", []))}


def test_the_request_botocore_sends_is_the_csv_body_with_format_and_failonwarnings_in_the_query() -> None:
    client = boto3.client("apigateway", region_name="us-east-1")
    body = b"Name,Key\nFirst," + VALUE.encode() + b"\n"
    with Stubber(client) as stubber:
        stubber.add_response(
            "import_api_keys",
            {"ids": ["abc123"], "warnings": []},
            {"body": body, "format": "csv", "failOnWarnings": True},
        )
        answer = client.import_api_keys(body=body, format="csv", failOnWarnings=True)
    assert answer["ids"] == ["abc123"]
    model = client.meta.service_model.operation_model("ImportApiKeys")
    assert (model.http["method"], model.http["requestUri"]) == ("POST", "/apikeys?mode=import")
    assert model.input_shape.members["failOnWarnings"].serialization == {
        "location": "querystring",
        "name": "failonwarnings",
    }


def test_keys_are_imported_with_their_values_columns_in_any_case_and_order_into_their_plans(
    apigw: APIGatewayClient,
) -> None:
    plan = apigw.create_usage_plan(name="plan")["id"]

    found = import_keys(apigw, f"enabled,KEY,Name,ignored,UsagePlanIds\nfalse,{VALUE},First,x,{plan}\n")

    [key_id] = found["ids"]
    assert found["warnings"] == []
    key = apigw.get_api_key(apiKey=key_id, includeValue=True)
    assert (key["name"], key["value"], key["enabled"]) == ("First", VALUE, False)
    assert [item["id"] for item in apigw.get_usage_plan_keys(usagePlanId=plan)["items"]] == [key_id]


def test_a_bad_row_is_a_warning_and_with_failonwarnings_nothing_is_imported(apigw: APIGatewayClient) -> None:
    text = f"Name,Key\nGood,{VALUE}\nShort,tooshort\n"

    with pytest.raises(ClientError) as refused:
        import_keys(apigw, text, fail_on_warnings=True)
    assert refused.value.response["Error"]["Code"] == "BadRequestException"
    assert apigw.get_api_keys()["items"] == []

    found = import_keys(apigw, text, fail_on_warnings=False)
    assert len(found["ids"]) == 1 and len(found["warnings"]) == 1


def test_a_value_imported_again_overwrites_its_key(apigw: APIGatewayClient) -> None:
    first = import_keys(apigw, f"Name,Key\nFirst,{VALUE}\n")["ids"]
    again = import_keys(apigw, f"Name,Key,Enabled\nRenamed,{VALUE},false\n")["ids"]

    assert first == again
    assert [(key["name"], key["enabled"]) for key in apigw.get_api_keys()["items"]] == [("Renamed", False)]


def test_new_keys_past_the_ceiling_are_refused_whole(apigw: APIGatewayClient) -> None:
    fidelity.set_api_key_limit(1)
    try:
        with pytest.raises(ClientError) as refused:
            import_keys(apigw, f"Name,Key\nA,{VALUE}\nB,{OTHER}\n")
    finally:
        fidelity.set_api_key_limit(None)

    assert refused.value.response["Error"]["Code"] == "LimitExceededException"
    assert apigw.get_api_keys()["items"] == []


def test_createapikey_with_a_value_is_one_call_with_the_value_tags_and_disabled() -> None:
    client = boto3.client("apigateway", region_name="us-east-1")
    with Stubber(client) as stubber:
        stubber.add_response(
            "create_api_key",
            {"id": "k1", "name": "stack-p_1", "enabled": False},
            {"name": "stack-p_1", "enabled": False, "tags": {"metered-ai:stack": "stack"}, "value": VALUE},
        )
        stubber.add_client_error("create_api_key", "ConflictException", "API Key already exists", 409)
        gateway = ApiGateway(client)
        assert (
            gateway.create_disabled_key_with_value("stack-p_1", {"metered-ai:stack": "stack"}, SecretStr(VALUE)) == "k1"
        )
        with pytest.raises(KeyValueInUse):
            gateway.create_disabled_key_with_value("stack-p_2", {"metered-ai:stack": "stack"}, SecretStr(VALUE))


def test_createapikey_with_a_value_at_the_ceiling_is_not_retried(apigw: APIGatewayClient) -> None:
    fidelity.set_api_key_limit(0)
    try:
        with pytest.raises(ApiKeyCeilingReached):
            ApiGateway(apigw).create_disabled_key_with_value("x", {}, SecretStr(base64.b64encode(b"v" * 20).decode()))
    finally:
        fidelity.set_api_key_limit(None)
    assert fidelity.management_calls().get("CreateApiKey") == 1
