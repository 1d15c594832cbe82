"""The library API the CLI calls, run in the caller's process: make, change, query, enter pods."""
