"""The AI API: who is calling, the models a tier may use, chat completions metered in tokens, usage."""
