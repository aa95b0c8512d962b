"""`metered-ai`: the operators' command line over the operator console (/admin/*), SigV4-signed (README,
"Operator CLI"). A client of the documented HTTP contract only: it imports nothing of the product."""
