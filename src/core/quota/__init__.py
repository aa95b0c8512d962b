"""Quota monitoring: each key's standing in its period, per-tier metrics, and alerts to operators and partners."""
