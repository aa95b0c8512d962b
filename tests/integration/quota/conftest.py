"""The quota monitor's emulated stack (`monitored`, defined with its tests in test_quota_monitor.py), shared with
the dormant-key sweep's tests."""

from tests.integration.quota.test_quota_monitor import monitored  # noqa: F401 - a fixture, found by name
