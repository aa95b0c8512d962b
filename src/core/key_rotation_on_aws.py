"""The kernel's key rotation (core.key_rotation) wired to its AWS adapters: API Gateway for keys and plans, the
partners table for `RETIRE#` items, the metering table for the carried ledger item. The operator console and the
portal's key recovery build it the same way."""

from core.adapters.apigateway import ApiGateway
from core.adapters.ledger_carry import LedgerCarryTable
from core.adapters.retired_keys import RetiredKeyRecords
from core.key_rotation import KeyRotation
from core.tiers import TierCatalog


def key_rotation_on_aws(
    stack_name: str, gateway: ApiGateway, *, partners_table: str, metering_table: str, tier_cache_seconds: int
) -> KeyRotation:
    return KeyRotation(
        stack_name,
        keys=gateway,
        tiers=TierCatalog(stack_name, gateway, tier_cache_seconds),
        records=RetiredKeyRecords(partners_table),
        ledger=LedgerCarryTable(metering_table),
    )
