"""Lambda entry points: parse the event, call one service, map the result."""
