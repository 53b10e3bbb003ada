"""Command-line tools with the Waldus JSON contract (see ``docs/cli-contract.md``)."""
