// AudioWorklet processor: microphone (any rate, downmixed to mono by the node's channel
// settings) -> 16 kHz -> 100-ms PCM16 chunks posted to the page as transferable ArrayBuffers,
// and a copy of each to every "tap" port the page hands over (the VAD worker's).
import { Pcm16Chunker, Resampler } from "./resampler.js";

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = options.processorOptions || {};
    const rate = opts.targetRate || 16000;
    const chunkMs = opts.chunkMs || 100;
    // `sampleRate` is the AudioContext's rate, a global of the worklet scope.
    this.resampler = new Resampler(sampleRate, rate);
    this.chunker = new Pcm16Chunker(Math.round((rate * chunkMs) / 1000));
    this.running = true;
    this.taps = [];
    this.port.onmessage = (event) => {
      if (event.data && event.data.type === "tap") this.taps.push(event.data.port);
      if (event.data && event.data.type === "flush") {
        this.send(this.chunker.push(this.resampler.flush()));
        const last = this.chunker.flush();
        if (last) this.send([last]);
        this.port.postMessage({ type: "flushed" });
        this.running = false;
      }
    };
  }

  send(chunks) {
    for (const data of chunks) {
      for (const tap of this.taps) {
        const copy = data.slice(0);
        tap.postMessage({ type: "chunk", data: copy }, [copy]);
      }
      this.port.postMessage({ type: "chunk", data }, [data]);
    }
  }

  process(inputs) {
    if (!this.running) return false;
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      this.send(this.chunker.push(this.resampler.process(channels[0])));
    }
    return true;
  }
}

registerProcessor("audiototext-capture", CaptureProcessor);
