"""`python -m app` is the `roi` command (how `roi serve` starts its worker processes)."""

from app.cli import main

main()
