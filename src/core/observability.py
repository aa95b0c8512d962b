"""The one place Powertools Logger, Tracer and Metrics are created; everything imports them from here."""

import logging
import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics

# botocore logs whole response bodies at DEBUG, and CreateApiKey's body holds a key value: however the
# log level is set, botocore never logs below INFO here.
logging.getLogger("botocore").setLevel(logging.INFO)

# Every metric carries its stack's name (STACK_NAME, template Globals): two stacks in one account publish to
# the same namespace, and each stack's alarms filter on their own `stack` (docs/template-notes.md).
STACK_DIMENSIONS = {"stack": os.environ["STACK_NAME"]} if os.environ.get("STACK_NAME") else {}

# X-Ray traces the AWS calls (botocore) and the model provider's HTTP calls (httplib, under urllib3). Not
# Tracer()'s patch_all: it imports every library it can patch (requests, sqlite3...) at every cold start, for
# calls these functions never make (docs/decisions.md, cold start).
TRACED_MODULES = ("botocore", "httplib")

logger = Logger()
tracer = Tracer(patch_modules=TRACED_MODULES)
metrics = Metrics()
metrics.set_default_dimensions(**STACK_DIMENSIONS)


def request_metrics() -> EphemeralMetrics:
    """Metrics for one request, flushed by the caller: no state shared with other requests or threads
    (the shared `metrics` keeps its dimensions until the handler returns)."""
    per_request = EphemeralMetrics()
    per_request.set_default_dimensions(**STACK_DIMENSIONS)
    return per_request
