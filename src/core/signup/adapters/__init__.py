"""Signup's own adapters: its items in the partners table."""
