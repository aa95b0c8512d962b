"""Operator commands run from a checkout with the project's venv: deploy pre-flight, smoke test, teardown."""
