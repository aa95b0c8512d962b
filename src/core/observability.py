"""The one place Powertools Logger, Tracer and Metrics are created; everything imports them from here."""

import logging

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics

# botocore logs whole response bodies at DEBUG, and CreateApiKey's body holds a key value: however the
# log level is set, botocore never logs below INFO here.
logging.getLogger("botocore").setLevel(logging.INFO)

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def request_metrics() -> EphemeralMetrics:
    """Metrics for one request, flushed by the caller: no state shared with other requests or threads
    (the shared `metrics` keeps its dimensions until the handler returns)."""
    return EphemeralMetrics()
