"""The gRPC adapter: servicers that translate the ``audiototext.v1`` protocol to core calls.

One module per service (:mod:`.transcription` with the stream in :mod:`.streaming`,
:mod:`.models`, :mod:`.system`), plus what they share: request validation
(:mod:`.validation`), error → status mapping (:mod:`.status`) and the bearer-token check
(:mod:`.auth`). Domain work happens in the engine, the session store
(:mod:`audiototext.server.sessions`), the model manager and the file transcriber
(:mod:`audiototext.server.files`); the servicers only validate, convert and map errors to
status codes with messages a person can act on.

Nothing is imported here, so loading one servicer does not load the others.
"""
