"""The AI API's own adapters: model providers, the upstream key, and the ledger in the metering table."""
