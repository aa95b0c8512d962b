"""The domain of the metered AI API control plane: models, services, ports and AWS adapters."""
