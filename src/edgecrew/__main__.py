"""`python -m edgecrew` runs the CLI."""

from edgecrew.cli import main

main()
