"""Billing: signed billing webhook deliveries that move a partner's key between tiers."""
