"""The gRPC adapter: servicers that translate the ``audiototext.v1`` protocol to core calls.

One module per service (:mod:`.transcription` with the stream in :mod:`.streaming`,
:mod:`.models`, :mod:`.system`), plus what they share: neutral status → gRPC code
(:mod:`.status`) and the bearer-token check (:mod:`.auth`). Domain work happens in the engine,
the stream layer (:mod:`audiototext.server.streams`, shared with the WebSocket), the session
store (:mod:`audiototext.server.sessions`), request validation
(:mod:`audiototext.server.validation`), the model manager and the file transcriber
(:mod:`audiototext.server.files`); the servicers only validate, convert and map errors to
status codes with messages a person can act on.

Nothing is imported here, so loading one servicer does not load the others.
"""
