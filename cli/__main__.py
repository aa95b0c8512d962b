"""`python -m cli`: the same as the installed `metered-ai` command."""

from cli.app import main

main()
