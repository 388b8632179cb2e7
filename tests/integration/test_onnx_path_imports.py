"""The serving image carries no TensorFlow: building the app on the ONNX backend must not import it.

Checked in a fresh interpreter, since the test session itself may have imported TensorFlow already.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_onnx_path_never_imports_tensorflow() -> None:
    """A fresh interpreter builds the app with the real manager: TensorFlow must stay out of sys.modules."""
    code = (
        "import json, sys, tempfile\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        "import service.inference.model_manager, service.inference.loaded_model\n"
        "import service.inference.backends.onnx_backend\n"
        "create_app(Settings(model_dir=tempfile.mkdtemp(), backend='onnx'))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {'tensorflow', 'keras', 'tf2onnx'})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
