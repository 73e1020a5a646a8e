// Microphone capture: getUserMedia -> AudioContext (the device's rate) -> AnalyserNode for the
// waveform and an AudioWorkletNode (capture-worklet.js) that resamples to 16 kHz and posts
// 100-ms PCM16 chunks.

const WORKLET_URL = new URL("./capture-worklet.js", import.meta.url);

/** Why the microphone cannot be used on this page at all, or null when it can. */
export function microphoneUnavailable() {
  if (!window.isSecureContext) return "insecure";
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return "unsupported";
  if (typeof AudioWorkletNode === "undefined") return "unsupported";
  return null;
}

/** The i18n key explaining a getUserMedia / audio set-up error. */
export function mediaErrorKey(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "mic.denied";
    case "NotFoundError":
    case "DevicesNotFoundError":
      return "mic.not_found";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "mic.busy";
    case "OverconstrainedError":
      return "mic.gone";
    default:
      return "mic.failed";
  }
}

/** Audio inputs: [{deviceId, label}] (labels are empty until permission was granted). */
export async function listMicrophones() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return [];
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices
    .filter((d) => d.kind === "audioinput" && d.deviceId !== "default" && d.deviceId !== "communications")
    .map((d) => ({ deviceId: d.deviceId, label: d.label }));
}

export class MicCapture {
  /**
   * @param {object} handlers onChunk(ArrayBuffer), onEnded() when the device goes away
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.stream = null;
    this.context = null;
    this.analyser = null;
    this.node = null;
    this.startTime = 0;
    this.flushed = null;
  }

  async start(deviceId) {
    const audio = {
      channelCount: 1,
      // The browser's voice processing (made for calls) reshapes speech in ways Whisper never
      // heard in training: the recogniser gets the microphone as it is.
      echoCancellation: false,
      noiseSuppression: false,
      autoGainControl: false,
    };
    if (deviceId) audio.deviceId = { exact: deviceId };
    this.stream = await navigator.mediaDevices.getUserMedia({ audio });
    try {
      const context = new AudioContext({ latencyHint: "interactive" });
      this.context = context;
      await context.audioWorklet.addModule(WORKLET_URL);
      const source = context.createMediaStreamSource(this.stream);
      this.analyser = context.createAnalyser();
      this.analyser.fftSize = 2048;
      this.analyser.smoothingTimeConstant = 0;
      source.connect(this.analyser);
      this.node = new AudioWorkletNode(context, "audiototext-capture", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        channelCount: 1,
        channelCountMode: "explicit", // the browser mixes stereo down to mono
        channelInterpretation: "speakers",
        processorOptions: { targetRate: 16000, chunkMs: 100 },
      });
      this.node.port.onmessage = (event) => {
        const msg = event.data;
        if (msg.type === "chunk") this.handlers.onChunk(msg.data);
        else if (msg.type === "flushed" && this.flushed) this.flushed();
      };
      source.connect(this.node);
      // The node writes silence; connected to the output so every browser keeps running it.
      this.node.connect(context.destination);
      if (context.state !== "running") await context.resume();
      this.startTime = context.currentTime;
      for (const track of this.stream.getAudioTracks()) {
        track.addEventListener("ended", () => this.handlers.onEnded && this.handlers.onEnded());
      }
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Sends a copy of every 16-kHz chunk to `port` too, straight from the worklet. */
  tap(port) {
    if (this.node) this.node.port.postMessage({ type: "tap", port }, [port]);
  }

  get sampleRate() {
    return this.context ? this.context.sampleRate : 0;
  }

  /** Seconds of audio since start (the stream's clock, near enough for the waveform). */
  elapsed() {
    return this.context ? Math.max(0, this.context.currentTime - this.startTime) : 0;
  }

  /** Stops: the worklet posts its last, partial chunk first (at most 300 ms wait). */
  async stop() {
    if (this.node) {
      const node = this.node;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 300);
        this.flushed = () => {
          clearTimeout(timer);
          resolve();
        };
        node.port.postMessage({ type: "flush" });
      });
      node.port.onmessage = null;
      node.disconnect();
    }
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.context && this.context.state !== "closed") {
      try {
        await this.context.close();
      } catch {
        // already closing
      }
    }
    this.node = this.analyser = this.stream = this.context = null;
    this.flushed = null;
  }
}
