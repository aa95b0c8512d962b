"""DynamoDB behaviour moto 5 gets wrong under concurrency, supplied for mock_aws and the moto server.

DynamoDB applies each request atomically, transactions included, however many clients write at once.
moto's TransactWriteItems deep-copies the tables for rollback while other threads mutate them, and
fails with "dictionary changed size during iteration". `install()` makes moto handle one DynamoDB
request at a time, which is what atomic requests look like from the outside.
"""

import threading
from typing import Any

from moto.core.common_types import TYPE_RESPONSE
from moto.dynamodb.responses import DynamoHandler

_requests = threading.RLock()
_original_call_action = DynamoHandler.call_action


def _one_request_at_a_time(self: DynamoHandler, *args: Any, **kwargs: Any) -> TYPE_RESPONSE:
    with _requests:
        response: TYPE_RESPONSE = _original_call_action(self, *args, **kwargs)
        return response


def install() -> None:
    """Patch moto once (later calls do nothing)."""
    DynamoHandler.call_action = _one_request_at_a_time  # type: ignore[method-assign]
