"""CloudWatch metrics per tier, as Embedded Metric Format log lines (the TierMetricsSink port).

Dimensions are `service`, `stack`, `tier` (and `threshold` for KeysOverThreshold), never a key or partner: the number
of metrics grows with tiers and thresholds, not with partners (README, "Quota monitoring", for the cost).
Per-key numbers go to structured logs instead. Each dimension set is its own EMF object, so these never mix
with the function's run metrics (core.observability.metrics).
"""

from collections.abc import Sequence

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

from core.quota.standing import TierSummary


class TierMetricsEmf:
    def __init__(self, stack_name: str) -> None:
        # Two stacks in one account publish to the same namespace; the dashboard picks its own.
        self._stack = stack_name

    def publish(self, summaries: Sequence[TierSummary], thresholds: tuple[int, ...]) -> None:
        for summary in summaries:
            tier = EphemeralMetrics()
            tier.add_dimension(name="stack", value=self._stack)
            tier.add_dimension(name="tier", value=summary.tier)
            tier.add_metric(name="KeysEvaluated", unit=MetricUnit.Count, value=summary.keys)
            tier.add_metric(
                name="QuotaUtilisationMax", unit=MetricUnit.Percent, value=round(summary.max_utilisation, 2)
            )
            tier.add_metric(name="RequestsUsed", unit=MetricUnit.Count, value=summary.requests)
            tier.add_metric(name="TokensUsed", unit=MetricUnit.Count, value=summary.tokens)
            tier.flush_metrics()
            for threshold in thresholds:
                over = EphemeralMetrics()
                over.add_dimension(name="stack", value=self._stack)
                over.add_dimension(name="tier", value=summary.tier)
                over.add_dimension(name="threshold", value=str(threshold))
                over.add_metric(
                    name="KeysOverThreshold", unit=MetricUnit.Count, value=summary.over_threshold.get(threshold, 0)
                )
                over.flush_metrics()
