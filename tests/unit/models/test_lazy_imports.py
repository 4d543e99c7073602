from __future__ import annotations

import json
import subprocess
import sys


def test_choosing_backends_loads_no_inference_library() -> None:
    # Registering every backend (what load_plugins does) must not pay for a model runtime.
    code = (
        "import json, sys, cairn.models\n"
        "import cairn.models.onnx_embedder, cairn.models.openai_compat, cairn.models.llama_local\n"
        "import cairn.testing.fakes\n"
        "heavy = ('onnxruntime', 'llama_cpp', 'tokenizers', 'torch', 'sentence_transformers')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
