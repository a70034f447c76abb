"""Command groups of the `scalelaw` CLI."""
