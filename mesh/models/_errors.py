from __future__ import annotations


class ExportVerificationError(AssertionError):
    """An exported ONNX model does not behave like the native model it was exported from.

    Subclasses AssertionError: a failed export check is a broken invariant, never a transient error.
    """
