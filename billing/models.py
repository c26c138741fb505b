"""Models of the billing app (filled in by its issue)."""
