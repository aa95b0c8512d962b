"""`make teardown STACK=<name> [CONFIRM=1]`: what deleting a stack leaves behind, listed, and deleted on request.

Keys made at signup are not CloudFormation resources: `sam delete` leaves them (still counting against the
account's 10,000 API keys per Region), and PartnersTable is retained with every partner's record. This finds the
keys by the stack's tag (metered-ai:stack, set at CreateApiKey) and the table by the stack's output (or
--partners-table once the stack is gone). Without --confirm it only lists.
"""

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

STACK_TAG = "metered-ai:stack"
EXIT_FAILED = 1
EXIT_USAGE = 2
BATCH = 25  # BatchWriteItem's limit


@dataclass(frozen=True)
class Leftovers:
    api_keys: list[tuple[str, str]]  # (id, name); never a key value
    partner_records: list[str]  # the table's pk values


def find_leftovers(apigateway: Any, dynamodb: Any, stack_name: str, partners_table: str | None) -> Leftovers:
    keys = [
        (key["id"], key.get("name", ""))
        for page in apigateway.get_paginator("get_api_keys").paginate(includeValues=False)
        for key in page.get("items", [])
        if (key.get("tags") or {}).get(STACK_TAG) == stack_name
    ]
    records: list[str] = []
    if partners_table:
        pages = dynamodb.get_paginator("scan").paginate(TableName=partners_table, ProjectionExpression="pk")
        records = [item["pk"]["S"] for page in pages for item in page.get("Items", [])]
    return Leftovers(api_keys=keys, partner_records=records)


def delete_leftovers(apigateway: Any, dynamodb: Any, partners_table: str | None, leftovers: Leftovers) -> None:
    """Keys first: a key without its record is an orphan nobody can find again, a record without its key is not."""
    for key_id, _ in leftovers.api_keys:
        apigateway.delete_api_key(apiKey=key_id)
    for start in range(0, len(leftovers.partner_records), BATCH):
        batch = leftovers.partner_records[start : start + BATCH]
        requests = {partners_table: [{"DeleteRequest": {"Key": {"pk": {"S": pk}}}} for pk in batch]}
        while requests:
            requests = dynamodb.batch_write_item(RequestItems=requests).get("UnprocessedItems") or {}


def partners_table_of(cloudformation: Any, stack_name: str) -> str | None:
    """The stack's PartnersTableName output; None when the stack no longer exists."""
    try:
        (stack,) = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in exc.response.get("Error", {}).get("Message", ""):
            return None
        raise
    outputs = {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
    return outputs.get("PartnersTableName")


def report(stack_name: str, partners_table: str | None, leftovers: Leftovers) -> str:
    lines = [
        f"stack {stack_name}: {len(leftovers.api_keys)} API key(s) tagged {STACK_TAG}={stack_name}, "
        f"{len(leftovers.partner_records)} partner record(s) in {partners_table or '(no PartnersTable found)'}"
    ]
    lines += [f"  api key {key_id} {name}" for key_id, name in leftovers.api_keys]
    lines += [f"  record  {pk}" for pk in leftovers.partner_records]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.stack:
        print("teardown: give the stack: make teardown STACK=<name>", file=sys.stderr)
        return EXIT_USAGE
    apigateway, dynamodb = boto3.client("apigateway"), boto3.client("dynamodb")
    try:
        table = args.partners_table or partners_table_of(boto3.client("cloudformation"), args.stack)
        leftovers = find_leftovers(apigateway, dynamodb, args.stack, table)
        print(report(args.stack, table, leftovers))
        if not args.confirm:
            print(f"dry run: nothing deleted. To delete them: make teardown STACK={args.stack} CONFIRM=1")
            return 0
        delete_leftovers(apigateway, dynamodb, table, leftovers)
    except (ClientError, BotoCoreError) as exc:
        print(f"teardown: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"deleted {len(leftovers.api_keys)} API key(s) and {len(leftovers.partner_records)} partner record(s)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.teardown", description=__doc__)
    parser.add_argument("--stack", default="", help="the stack's name (its keys carry it as a tag)")
    parser.add_argument("--partners-table", help="PartnersTable's name, once the stack itself is deleted")
    parser.add_argument("--confirm", action="store_true", help="delete what is listed (default: list only)")
    return parser


if __name__ == "__main__":
    sys.exit(main())
