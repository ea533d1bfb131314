"""The ONNX Runtime session of the bare servers (bare_server.py, bare_grpc_server.py): the model in
$MODEL on the CPU, $INTRA_OP_THREADS intra-op threads (default 1) and one inter-op thread."""

from __future__ import annotations

import os

import onnxruntime as ort


def load() -> tuple[ort.InferenceSession, str, str]:
    """The session, its first input's name and its first output's name."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(os.environ.get("INTRA_OP_THREADS", "1"))
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(os.environ["MODEL"], options, providers=["CPUExecutionProvider"])
    return session, session.get_inputs()[0].name, session.get_outputs()[0].name
