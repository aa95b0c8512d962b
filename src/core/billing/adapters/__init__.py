"""The billing webhook's own adapters: the signing secrets and the ledger's request counts."""
