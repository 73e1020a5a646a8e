"""gRPC servicers: translate the ``audiototext.v1`` protocol to core calls and back.

Domain work happens in the engine (``audiototext.streaming``), the session store
(:mod:`audiototext.server.sessions`), the model manager and the file transcriber; this module
only validates requests, converts messages and maps errors to status codes with messages a
person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from audiototext._aio import wait_event
from audiototext._version import __version__
from audiototext.errors import (
    AudioError,
    AudioToTextError,
    DownloadError,
    ModelError,
    ModelNotCachedError,
    UnknownModelError,
)
from audiototext.server.sessions import (
    Attachment,
    SessionExpiredError,
    SessionStore,
    StreamSession,
    StreamSpec,
)
from audiototext.streaming.types import (
    BufferFullError,
    OverloadedError,
    SpeechEvent,
    SpeechEventKind,
    StreamOptions,
    StreamResult,
)
from audiototext.wire._proto import (
    models_pb2,
    models_pb2_grpc,
    system_pb2,
    system_pb2_grpc,
    transcription_pb2,
    transcription_pb2_grpc,
)
from audiototext.wire.codec import OPUS_RATES_HZ, ChunkError, Encoding

__all__ = [
    "FileRequest",
    "FileTranscript",
    "ModelsService",
    "ServiceLimits",
    "SystemService",
    "TokenInterceptor",
    "TranscriptionService",
    "status_for",
]

log = logging.getLogger(__name__)


pb = transcription_pb2
_WAKE_S = 0.1  # the writer re-checks credit at least this often


MAX_BEAM_SIZE = 16


@dataclass(frozen=True)
class ServiceLimits:
    max_chunk_bytes: int = 1 << 20
    max_buffered_s: float = 30.0
    metrics_interval_s: float = 1.0


@dataclass(frozen=True)
class FileRequest:
    """A validated ``TranscribeRequest``."""

    audio: bytes
    language: str | None = None
    word_timestamps: bool = False
    beam_size: int = 5


@dataclass(frozen=True)
class FileTranscript:
    text: str
    language: str
    duration_s: float
    segments: tuple[tuple[float, float, str], ...]
    words: tuple[tuple[float, float, str], ...]


FileTranscribeFn = Callable[[FileRequest], Awaitable[FileTranscript]]


class _StreamError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status code for a deliberate audiototext error."""
    if isinstance(exc, UnknownModelError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, ModelNotCachedError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(exc, DownloadError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, OverloadedError | BufferFullError):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if isinstance(exc, AudioError | ValueError | ChunkError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ModelError):
        return grpc.StatusCode.FAILED_PRECONDITION
    return grpc.StatusCode.INTERNAL


# --------------------------------------------------------------------------- streaming


def _result_message(event_seq: int, ev: StreamResult | SpeechEvent) -> pb.StreamingResponse:
    if isinstance(ev, SpeechEvent):
        kind = pb.SpeechEvent.BEGIN if ev.kind is SpeechEventKind.BEGIN else pb.SpeechEvent.END
        return pb.StreamingResponse(
            event_seq=event_seq, speech_event=pb.SpeechEvent(kind=kind, time_s=ev.time_s)
        )
    return pb.StreamingResponse(
        event_seq=event_seq,
        result=pb.Result(
            utterance_id=ev.utterance_id,
            is_final=ev.is_final,
            stability=ev.stability,
            text=ev.text,
            stable_text=ev.stable_text,
            segments=[pb.Segment(start_s=ev.start_s, end_s=ev.end_s, text=ev.text)],
            audio_processed_s=ev.audio_processed_s,
            words=[pb.Word(text=w.text, start_s=w.start_s, end_s=w.end_s) for w in ev.words],
        ),
    )


class _Connection:
    """Per-connection state shared by the request reader and the response writer."""

    def __init__(self, session: StreamSession, attachment: Attachment) -> None:
        self.session = session
        self.attachment = attachment
        self.error: _StreamError | None = None

    def fail(self, code: grpc.StatusCode, message: str) -> None:
        if self.error is None:
            self.error = _StreamError(code, message)
        self.attachment.wake.set()


class TranscriptionService(transcription_pb2_grpc.TranscriptionServicer):
    def __init__(
        self,
        store: SessionStore,
        *,
        model: str,
        limits: ServiceLimits,
        transcribe_file: FileTranscribeFn | None = None,
    ) -> None:
        self.store = store
        self.model = model
        self.limits = limits
        self._transcribe_file = transcribe_file

    # ---- config ---------------------------------------------------------------------------

    def _spec(self, cfg: pb.StreamConfig) -> StreamSpec:
        encoding = int(cfg.encoding)
        if encoding not in Encoding.audio():
            names = ", ".join(e.name for e in Encoding.audio())
            raise _StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"StreamConfig.encoding must be one of {names}",
            )
        rate = int(cfg.sample_rate_hz)
        if not 8000 <= rate <= 48000:
            raise _StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"StreamConfig.sample_rate_hz is {rate}; it must be the rate of the audio "
                "you send, between 8000 and 48000 Hz",
            )
        channels = int(cfg.channels) or 1
        if not 1 <= channels <= 8:
            raise _StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"StreamConfig.channels is {channels}; send 1 to 8 interleaved channels",
            )
        if encoding == Encoding.OPUS and (rate not in OPUS_RATES_HZ or channels > 2):
            raise _StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"OPUS needs 1 or 2 channels at {', '.join(map(str, OPUS_RATES_HZ))} Hz; "
                f"got {channels} channel(s) at {rate} Hz (use PCM16 for other rates)",
            )
        self._check_model(cfg.model)
        defaults = StreamOptions()
        try:
            options = StreamOptions(
                model=self.model,
                language=cfg.language or None,
                interim_results=cfg.interim_results,
                partial_interval_ms=cfg.partial_interval_ms or defaults.partial_interval_ms,
                endpoint_silence_ms=cfg.endpoint_silence_ms or defaults.endpoint_silence_ms,
                max_segment_s=cfg.max_segment_s or defaults.max_segment_s,
                max_buffered_s=self.limits.max_buffered_s,
            )
        except ValueError as exc:
            raise _StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"StreamConfig: {exc}") from exc
        return StreamSpec(encoding, rate, channels, cfg.interim_results, options)

    def _check_model(self, name: str) -> None:
        if not name or name == self.model:
            return
        from audiototext.models.registry import resolve

        try:
            spec = resolve(name)
        except UnknownModelError as exc:  # its message names close matches and known models
            raise _StreamError(grpc.StatusCode.NOT_FOUND, str(exc)) from exc
        if spec.name != self.model:
            raise _StreamError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this server runs {self.model}, not {spec.name}; leave StreamConfig.model "
                f"empty or start a server with `audiototext serve --model {spec.name}`",
            )

    # ---- the stream -----------------------------------------------------------------------

    async def StreamingTranscribe(
        self,
        request_iterator: AsyncIterator[pb.StreamingRequest],
        context: grpc.aio.ServicerContext[pb.StreamingRequest, pb.StreamingResponse],
    ) -> None:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        try:
            session, resumed, cursor = self._open(first)
        except _StreamError as exc:
            await context.abort(exc.code, exc.message)
        conn = _Connection(session, session.attach())
        await context.write(
            pb.StreamingResponse(
                started=pb.SessionStarted(
                    session_id=session.id,
                    resumed=resumed,
                    next_seq=session.next_seq,
                    credit_ms=self._credit_ms(session),
                    model=self.model,
                    resume_grace_s=self.store.resume_grace_s,
                )
            )
        )
        reader = asyncio.create_task(self._read(requests, conn), name=f"read-{session.id}")
        try:
            await self._write(context, conn, cursor)
        finally:
            reader.cancel()
            session.detach(conn.attachment)
        if conn.error is not None:
            await context.abort(conn.error.code, conn.error.message)
        if conn.attachment.replaced:
            await context.abort(
                grpc.StatusCode.ABORTED,
                "a newer connection resumed this session; this one is closed",
            )
        if session.failed is not None:
            await context.abort(
                grpc.StatusCode.INTERNAL,
                f"the streaming engine failed: {session.failed}; start a new stream",
            )

    def _open(self, first: pb.StreamingRequest) -> tuple[StreamSession, bool, int]:
        kind = first.WhichOneof("request")
        if kind != "config":
            raise _StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the first message of a stream must be a StreamConfig, not {kind or 'empty'}; "
                "send the config, then audio",
            )
        if self.store.closing:
            raise _StreamError(
                grpc.StatusCode.UNAVAILABLE, "the server is shutting down; connect to another"
            )
        cfg = first.config
        if cfg.session_id:
            try:
                session = self.store.get(cfg.session_id)
            except SessionExpiredError as exc:
                raise _StreamError(grpc.StatusCode.NOT_FOUND, str(exc)) from exc
            want = max(1, int(cfg.resume_from_event))
            if want < session.oldest_event():
                raise _StreamError(
                    grpc.StatusCode.DATA_LOSS,
                    f"results from event {want} on are no longer kept (oldest kept: "
                    f"{session.oldest_event()}); start a new stream",
                )
            if session.failed is not None:
                raise _StreamError(
                    grpc.StatusCode.INTERNAL,
                    f"this session failed ({session.failed}); start a new stream",
                )
            return session, True, want
        spec = self._spec(cfg)
        try:
            session = self.store.create(spec)
        except OverloadedError as exc:
            raise _StreamError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from exc
        except ValueError as exc:  # the engine refused the options (e.g. the language)
            raise _StreamError(grpc.StatusCode.INVALID_ARGUMENT, f"StreamConfig: {exc}") from exc
        return session, False, 1

    def _credit_ms(self, session: StreamSession) -> int:
        high_water_s = self.limits.max_buffered_s / 2
        return max(0, int((high_water_s - session.lag_s()) * 1000))

    async def _read(self, requests: AsyncIterator[pb.StreamingRequest], conn: _Connection) -> None:
        session = conn.session
        try:
            async for req in requests:
                if conn.attachment.replaced or conn.error is not None:
                    return
                kind = req.WhichOneof("request")
                if kind == "audio":
                    self._accept(session, req.audio)
                elif kind == "control":
                    if req.control.action == pb.Control.FLUSH:
                        session.engine.flush()
                    elif req.control.action == pb.Control.FINISH:
                        session.request_finish()
                    else:
                        raise _StreamError(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            "Control.action must be FLUSH or FINISH",
                        )
                elif kind == "config":
                    raise _StreamError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "a stream takes one StreamConfig, as its first message; this one sent "
                        "a second (to resume, open a new stream with session_id)",
                    )
                else:
                    raise _StreamError(grpc.StatusCode.INVALID_ARGUMENT, "empty StreamingRequest")
                conn.attachment.wake.set()
            # The request stream ended without FINISH. A dropped connection looks the same
            # to the server, so this is not taken as the end of the audio: the session waits
            # for a resume like a detached one and is finalised after the grace period.
            if not session.finishing and not conn.attachment.replaced:
                session.half_closed_at = time.monotonic()
        except _StreamError as exc:
            conn.fail(exc.code, exc.message)
            self._abandon(session)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("stream %s: reading requests failed", session.id)
            conn.fail(grpc.StatusCode.INTERNAL, f"internal error: {exc}")
            self._abandon(session)

    def _abandon(self, session: StreamSession) -> None:
        """A stream that broke the protocol cannot be resumed: free its engine slot now."""
        session.request_finish()
        self.store.remove(session)

    def _accept(self, session: StreamSession, chunk: pb.AudioChunk) -> None:
        if session.finishing and self.store.closing:
            # Graceful shutdown finalises the audio received so far; chunks still in flight
            # are dropped unacknowledged rather than failing the stream before its finals.
            return
        seq = int(chunk.seq) or session.next_seq
        if seq < session.next_seq:
            return  # a resent chunk the server already has; the next Ack covers it
        if seq > session.next_seq:
            raise _StreamError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"chunk seq {seq} skips {session.next_seq}..{seq - 1}; number chunks "
                "1, 2, 3, ... and resend from SessionStarted.next_seq after a reconnect",
            )
        if session.finishing:
            raise _StreamError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "audio after FINISH; open a new stream for more audio",
            )
        if len(chunk.data) > self.limits.max_chunk_bytes:
            raise _StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"chunk {seq} has {len(chunk.data)} bytes, over the limit of "
                f"{self.limits.max_chunk_bytes} (--max-chunk-bytes); send smaller chunks, "
                "e.g. 100 ms each",
            )
        encoding = int(chunk.encoding) or session.spec.encoding
        try:
            samples = session.decoder.decode(chunk.data, encoding, seq)
            if samples.size:
                session.engine.accept(samples, session.spec.sample_rate_hz, session.spec.channels)
        except BufferFullError as exc:
            raise _StreamError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"chunk {seq}: {exc}; send no more audio than Ack.credit_ms allows "
                f"(at most {self.limits.max_buffered_s:g} s may wait unprocessed)",
            ) from exc
        except (ChunkError, AudioError, ValueError) as exc:
            raise _StreamError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        session.next_seq = seq + 1

    async def _write(
        self,
        context: grpc.aio.ServicerContext[pb.StreamingRequest, pb.StreamingResponse],
        conn: _Connection,
        cursor: int,
    ) -> None:
        session = conn.session
        att = conn.attachment
        last_ack = -1
        last_credit = -1
        next_metrics = time.monotonic() + self.limits.metrics_interval_s
        while not (att.replaced or conn.error is not None):
            att.wake.clear()
            for event_seq, event in session.events_from(cursor):
                await context.write(_result_message(event_seq, event))
                cursor = event_seq + 1
            acked = session.next_seq - 1
            credit = self._credit_ms(session)
            if acked != last_ack or (
                credit != last_credit and (last_credit == 0 or abs(credit - last_credit) >= 250)
            ):
                lag_ms = int(session.lag_s() * 1000)
                await context.write(
                    pb.StreamingResponse(ack=pb.Ack(seq=acked, lag_ms=lag_ms, credit_ms=credit))
                )
                last_ack, last_credit = acked, credit
            now = time.monotonic()
            if now >= next_metrics:
                stats = self.store.recognizer.stats()
                await context.write(
                    pb.StreamingResponse(
                        metrics=pb.Metrics(
                            rtf=stats.rtf,
                            latency_ms=stats.final_latency_ms_p95,
                            queue_depth=stats.queue_depth,
                            active_streams=self.store.open_count(),
                        )
                    )
                )
                next_metrics = now + self.limits.metrics_interval_s
            if session.completed and cursor > session.event_count:
                return
            await wait_event(att.wake, _WAKE_S)

    # ---- whole files ----------------------------------------------------------------------

    async def Transcribe(
        self,
        request: pb.TranscribeRequest,
        context: grpc.aio.ServicerContext[pb.TranscribeRequest, pb.TranscribeResponse],
    ) -> pb.TranscribeResponse:
        if self._transcribe_file is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "this server does not transcribe files"
            )
        assert self._transcribe_file is not None
        try:
            self._check_model(request.model)
        except _StreamError as exc:
            await context.abort(exc.code, exc.message)
        if not request.audio:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "TranscribeRequest.audio is empty; send a file"
            )
        if request.beam_size > MAX_BEAM_SIZE:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"TranscribeRequest.beam_size is {request.beam_size}; use 1 (greedy) to "
                f"{MAX_BEAM_SIZE}, or 0 for the default",
            )
        file_request = FileRequest(
            audio=request.audio,
            language=request.language or None,
            word_timestamps=request.word_timestamps,
            beam_size=request.beam_size or FileRequest.beam_size,
        )
        try:
            out = await self._transcribe_file(file_request)
        except (AudioToTextError, ValueError) as exc:
            await context.abort(status_for(exc), str(exc))
        return pb.TranscribeResponse(
            text=out.text,
            language=out.language,
            duration_s=out.duration_s,
            segments=[pb.Segment(start_s=a, end_s=b, text=t) for a, b, t in out.segments],
            words=[pb.Word(start_s=a, end_s=b, text=t) for a, b, t in out.words],
        )


# --------------------------------------------------------------------------- models


def _cached_message(entry: Any) -> models_pb2.CachedModel:
    return models_pb2.CachedModel(
        name=entry.name,
        version_id=entry.version_id,
        precision=entry.precision,
        size_bytes=entry.size_bytes,
        source_repo=entry.source["repo_id"],
        commit=entry.commit,
        created_at=entry.created_at,
        path=str(entry.path),
    )


class _QueueProgress:
    """A ProgressSink that hands updates from the pull thread to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        self._loop = loop
        self._queue = queue
        self._totals: dict[str, tuple[str, float | None, str, float]] = {}

    def _put(self, item: models_pb2.PullProgress) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def task(self, key: str, description: str, total: float | None, unit: str = "B") -> None:
        self._totals[key] = (description, total, unit, 0.0)
        self._put(
            models_pb2.PullProgress(task=key, description=description, total=total or 0, unit=unit)
        )

    def advance(self, key: str, amount: float) -> None:
        desc, total, unit, done = self._totals.get(key, (key, None, "B", 0.0))
        done += amount
        self._totals[key] = (desc, total, unit, done)
        self._put(
            models_pb2.PullProgress(
                task=key, description=desc, completed=done, total=total or 0, unit=unit
            )
        )

    def done(self, key: str) -> None:
        desc, total, unit, done = self._totals.get(key, (key, None, "B", 0.0))
        self._put(
            models_pb2.PullProgress(
                task=key, description=desc, completed=total or done, total=total or 0, unit=unit
            )
        )

    def note(self, message: str) -> None:
        self._put(models_pb2.PullProgress(note=message))


class ModelsService(models_pb2_grpc.ModelsServicer):
    """The model cache: list, pull (with progress), remove, info.

    ``in_use`` returns the cache folders of the models this server has loaded; removing one
    of them is refused (the server would need it again to load a file transcriber or after a
    restart), so stop the server or serve another model first.
    """

    def __init__(
        self,
        cache_root: Path | None = None,
        in_use: Callable[[], Collection[Path]] = lambda: (),
    ) -> None:
        self._cache_root = cache_root
        self._in_use = in_use

    def _cache(self) -> Any:
        from audiototext.models.cache import ModelCache

        return ModelCache(self._cache_root)

    async def List(
        self, request: models_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.ListModelsResponse:
        from audiototext.models.registry import KNOWN_MODELS

        cache = self._cache()
        entries, _damaged = await asyncio.to_thread(cache.scan)
        names = {e.name for e in entries}
        return models_pb2.ListModelsResponse(
            cached=[_cached_message(e) for e in entries],
            known=[
                models_pb2.KnownModel(
                    name=m.name,
                    languages=m.languages,
                    params_millions=m.params_millions or 0.0,
                    download_mb=int(m.download_mb or 0),
                    ram_mb=int(m.ram_mb or 0),
                    cached=m.name in names,
                )
                for m in KNOWN_MODELS.values()
            ],
            cache_dir=str(cache.root),
        )

    async def Pull(
        self, request: models_pb2.PullModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        from audiototext.models.manager import pull

        if not request.name:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "PullModelRequest.name is empty")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        sink = _QueueProgress(loop, queue)
        job = asyncio.ensure_future(
            asyncio.to_thread(
                pull,
                request.name,
                revision=request.revision or None,
                precision=request.precision or "auto",
                force=request.force,
                progress=sink,
                cache=self._cache(),
            )
        )
        job.add_done_callback(lambda _f: queue.put_nowait(None))
        while True:
            item = await queue.get()
            if item is None:
                break
            await context.write(item)
        try:
            result = job.result()
        except (AudioToTextError, ValueError) as exc:
            await context.abort(status_for(exc), str(exc))
        # Progress posted just before the job ended may still be queued.
        while not queue.empty():
            item = queue.get_nowait()
            if item is not None:
                await context.write(item)
        await context.write(
            models_pb2.PullProgress(
                done=True, model=_cached_message(result.entry), already_cached=result.cached
            )
        )

    async def Remove(
        self, request: models_pb2.RemoveModelRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.RemoveModelResponse:
        from audiototext.models.registry import resolve

        try:
            spec = resolve(request.name)
        except UnknownModelError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        cache = self._cache()
        chosen = [
            e
            for e in cache.entries(spec.name, request.precision or None)
            if e.matches_version(request.version)
        ]
        if not chosen:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"no cached entry of {spec.name} matches"
            )
        if len(chosen) > 1 and not request.all:
            options = "; ".join(f"{e.version_id}/{e.precision}" for e in chosen)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{len(chosen)} entries of {spec.name} match ({options}); pick one with "
                "version/precision or set all",
            )
        loaded = {p.resolve() for p in self._in_use()}
        busy = [e for e in chosen if Path(e.path).resolve() in loaded]
        if busy:
            names = "; ".join(f"{e.name} {e.version_id}/{e.precision}" for e in busy)
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{names} is in use by this server; stop it (or serve another model) "
                "before removing it",
            )
        for entry in chosen:
            await asyncio.to_thread(cache.remove, entry)
        return models_pb2.RemoveModelResponse(removed=[_cached_message(e) for e in chosen])

    async def Info(
        self, request: models_pb2.ModelInfoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.ModelInfo:
        from audiototext.models.registry import resolve

        try:
            spec = resolve(request.name)
        except UnknownModelError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        entries = self._cache().entries(spec.name)
        return models_pb2.ModelInfo(
            name=spec.name,
            description=spec.description or "",
            languages=spec.languages,
            n_mels=spec.n_mels,
            params_millions=spec.params_millions or 0.0,
            download_mb=int(spec.download_mb or 0),
            ram_mb=int(spec.ram_mb or 0),
            cached=[_cached_message(e) for e in entries],
        )


# --------------------------------------------------------------------------- system


class SystemService(system_pb2_grpc.SystemServicer):
    def __init__(self, store: SessionStore, model: str) -> None:
        self.store = store
        self.model = model
        self._started = time.monotonic()

    async def GetHardware(
        self, request: system_pb2.HardwareRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> system_pb2.HardwareProfile:
        import json

        from audiototext.hardware import detect, pick_precision

        profile = await asyncio.to_thread(detect)
        return system_pb2.HardwareProfile(
            json=json.dumps(profile.to_json()),
            recommended_precision=pick_precision(profile),
            physical_cores=profile.physical_cores,
            logical_cores=profile.logical_cores,
            providers=list(profile.providers),
        )

    async def GetStats(
        self, request: system_pb2.StatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> system_pb2.ServerStats:
        stats = self.store.recognizer.stats()
        return system_pb2.ServerStats(
            active_streams=self.store.open_count(),
            detached_streams=self.store.detached_count(),
            queue_depth=stats.queue_depth,
            rtf=stats.rtf,
            final_latency_ms_p50=stats.final_latency_ms_p50,
            final_latency_ms_p95=stats.final_latency_ms_p95,
            overloaded=stats.overloaded,
            model=self.model,
            version=__version__,
            uptime_s=time.monotonic() - self._started,
            streams_total=self.store.streams_total,
        )


# --------------------------------------------------------------------------- auth


class TokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Requires ``authorization: Bearer <token>`` metadata on every RPC."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        got: str | bytes = ""
        for key, value in handler_call_details.invocation_metadata or ():
            if key == "authorization":
                got = value
        got_bytes = got.encode() if isinstance(got, str) else got
        if handler is None or hmac.compare_digest(got_bytes, self._expected):
            return handler
        message = (
            "this server requires a bearer token: pass --token (metadata "
            "'authorization: Bearer <token>')"
            if not got_bytes
            else "the bearer token is not valid for this server"
        )
        return _denying(handler, message)


_DENY_READ_S = 5.0


def _denying(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if handler.request_streaming:
            # Take the first message before refusing: a client that writes it (the stream's
            # config) while the refusal is on its way would otherwise see its own write fail
            # ("Internal error from Core") instead of UNAUTHENTICATED.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_DENY_READ_S):
                    await anext(aiter(request))
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(deny, **kwargs)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(deny, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(deny, **kwargs)
    return grpc.unary_unary_rpc_method_handler(deny, **kwargs)
