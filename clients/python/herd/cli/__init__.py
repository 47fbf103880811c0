"""The `herd` command."""
