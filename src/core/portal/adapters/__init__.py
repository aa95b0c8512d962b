"""The operator console's adapters: its reads and writes of the partners table (records and audit trail)."""
