"""The partner portal: the pages at GET /portal (sign up, my usage), their assets, the facts they show."""
