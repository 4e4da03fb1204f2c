"""`python -m modelfleet.cli`: the `modelfleet` command."""

from modelfleet.cli import console_main

console_main()
