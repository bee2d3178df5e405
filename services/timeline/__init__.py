"""Predictive timeline service: task durations, project/milestone completion and deadline risk."""
