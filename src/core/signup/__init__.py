"""Partner signup: a key on a self-service tier, the email confirmation, and the sweep of failed signups."""
