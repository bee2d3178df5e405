"""Unit tests of the timeline service: models, ONNX export, calibration, Monte-Carlo, effort model."""
