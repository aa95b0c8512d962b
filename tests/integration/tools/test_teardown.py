"""`make teardown` against the emulated account (moto): it lists this stack's API keys and partner records,
deletes nothing without CONFIRM, and with it deletes exactly those, never another stack's keys."""

from typing import Any

import boto3
import pytest

from offline.provision import ProvisionedStack
from tools.teardown import delete_leftovers, find_leftovers, main

OTHER_STACK = "metered-ai-prod"


def make_key(stack_name: str, partner_id: str) -> str:
    """A key as signup makes it: named after the partner, tagged with the stack."""
    key = boto3.client("apigateway").create_api_key(
        name=f"{stack_name}-{partner_id}",
        enabled=True,
        tags={"metered-ai:stack": stack_name, "metered-ai:partner-id": partner_id},
    )
    return str(key["id"])


@pytest.fixture
def partners(stack: ProvisionedStack) -> dict[str, Any]:
    """Two partners of this stack (key + records) and one key of another stack in the same account."""
    table = boto3.resource("dynamodb").Table(stack.tables["PartnersTable"])
    ours = []
    for partner_id in ("p_one", "p_two"):
        key_id = make_key(stack.stack_name, partner_id)
        table.put_item(Item={"pk": f"PARTNER#{partner_id}", "partner_id": partner_id, "api_key_id": key_id})
        table.put_item(Item={"pk": f"APIKEY#{key_id}", "partner_id": partner_id})
        ours.append(key_id)
    return {"ours": ours, "theirs": make_key(OTHER_STACK, "p_three"), "table": stack.tables["PartnersTable"]}


def key_ids() -> set[str]:
    return {key["id"] for key in boto3.client("apigateway").get_api_keys()["items"]}


def test_lists_only_this_stacks_keys_and_its_records(stack: ProvisionedStack, partners: dict[str, Any]) -> None:
    # When the stack's leftovers are looked up
    leftovers = find_leftovers(
        boto3.client("apigateway"), boto3.client("dynamodb"), stack.stack_name, partners["table"]
    )

    # Then exactly its two keys and four records, not the other stack's key
    assert {key_id for key_id, _ in leftovers.api_keys} == set(partners["ours"])
    assert len(leftovers.partner_records) == 4
    assert {"PARTNER#p_one", "PARTNER#p_two"} <= set(leftovers.partner_records)


def test_a_dry_run_deletes_nothing(
    stack: ProvisionedStack, partners: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    # When teardown runs without CONFIRM
    status = main(["--stack", stack.stack_name, "--partners-table", partners["table"]])

    # Then it lists what it would delete and deletes nothing
    assert status == 0
    out = capsys.readouterr().out
    assert "2 API key(s)" in out and "4 partner record(s)" in out
    assert all(key_id in out for key_id in partners["ours"])
    assert "dry run: nothing deleted" in out
    assert set(partners["ours"]) | {partners["theirs"]} <= key_ids()
    assert boto3.client("dynamodb").scan(TableName=partners["table"])["Count"] == 4


def test_confirmed_deletes_this_stacks_keys_and_records_only(stack: ProvisionedStack, partners: dict[str, Any]) -> None:
    # When teardown runs with CONFIRM
    status = main(["--stack", stack.stack_name, "--partners-table", partners["table"], "--confirm"])

    # Then this stack's keys and records are gone; the other stack's key is untouched
    assert status == 0
    assert key_ids() == {partners["theirs"]}
    assert boto3.client("dynamodb").scan(TableName=partners["table"])["Count"] == 0


def test_more_records_than_one_batch_are_all_deleted(stack: ProvisionedStack) -> None:
    table = stack.tables["PartnersTable"]
    dynamodb = boto3.client("dynamodb")
    for number in range(60):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": f"EMAIL#{number}@example.com"}})
    leftovers = find_leftovers(boto3.client("apigateway"), dynamodb, stack.stack_name, table)

    delete_leftovers(boto3.client("apigateway"), dynamodb, table, leftovers)

    assert dynamodb.scan(TableName=table)["Count"] == 0
