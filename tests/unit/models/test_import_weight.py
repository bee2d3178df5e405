from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "mlflow", "lightgbm", "sklearn", "skl2onnx", "onnxmltools")


def test_serving_imports_none_of_the_training_stack() -> None:
    # a fresh interpreter: this test process has torch loaded by other tests
    code = (
        "import sys, mesh.models, mesh.serving\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == ""
