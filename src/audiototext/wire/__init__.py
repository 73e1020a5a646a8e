"""What the client and the server share: the ``audiototext.v1`` protocol.

* ``_proto`` — the protobuf and gRPC modules generated from ``proto/audiototext/v1``
  (``proto/generate.py``; never edited by hand).
* :mod:`~audiototext.wire.codec` — the audio chunk encodings (PCM16, FLOAT32, framed Opus).

Nothing here imports the server, the streaming engine or ONNX Runtime, so the client stays
light; this ``__init__`` imports nothing so the generated code loads without PyAV.
"""
