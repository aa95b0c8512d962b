"""The quota monitor's own adapters: its items in the metering table and per-tier metrics."""
