"""`python -m pluralism` is the `pluralism` command."""

from pluralism.cli import main

main()
