"""Models of the metering app (filled in by its issue)."""
