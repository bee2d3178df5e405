"""The shared runtime of the Sunday ML mesh: one place for each concern (events, bus, features, models,
serving, telemetry, config). Services are thin layers on top."""
