// Live waveform: a scrolling peak envelope of the last WINDOW_S seconds read from the
// microphone's AnalyserNode on every animation frame, with the speech regions the server
// reports (speech_event BEGIN/END, stream seconds) shaded behind it, and a band along the
// bottom where the page's own VAD (vad-worker.js) hears speech, at once. WebGL when the browser
// gives a hardware context, a 2D canvas otherwise (or after the WebGL context is lost).

const WINDOW_S = 8;

const VERTEX = `attribute vec2 a;void main(){gl_Position=vec4(a,0.0,1.0);}`;
const FRAGMENT = `precision mediump float;uniform vec4 c;void main(){gl_FragColor=c;}`;

function hexColour(text, fallback) {
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec((text || "").trim());
  if (!m) return fallback;
  let hex = m[1];
  if (hex.length === 3) hex = [...hex].map((c) => c + c).join("");
  return [0, 2, 4].map((k) => parseInt(hex.slice(k, k + 2), 16) / 255);
}

/** Whether WebGL would be drawn by the CPU (SwiftShader, llvmpipe: no usable GPU). */
function softwareWebGl() {
  try {
    const gl = document.createElement("canvas").getContext("webgl");
    if (!gl) return false;
    const info = gl.getExtension("WEBGL_debug_renderer_info");
    const name = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    gl.getExtension("WEBGL_lose_context")?.loseContext();
    return /swiftshader|llvmpipe|softpipe|software/i.test(name);
  } catch {
    return false;
  }
}

class GlRenderer {
  constructor(canvas) {
    // Not a WebGL the CPU draws (no GPU): it took twice the 2D canvas's CPU for this waveform
    // (bench/web_page.py, bench/NOTES.md round 14). Checked on a spare canvas: one that had a
    // WebGL context cannot give a 2D one.
    if (softwareWebGl()) throw new Error("software WebGL");
    const options = { antialias: true, alpha: false, failIfMajorPerformanceCaveat: true };
    const gl =
      canvas.getContext("webgl", options) || canvas.getContext("experimental-webgl", options);
    if (!gl) throw new Error("no WebGL");
    const shader = (type, src) => {
      const s = gl.createShader(type);
      gl.shaderSource(s, src);
      gl.compileShader(s);
      if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error("shader");
      return s;
    };
    const program = gl.createProgram();
    gl.attachShader(program, shader(gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, shader(gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error("program");
    gl.useProgram(program);
    this.gl = gl;
    this.colour = gl.getUniformLocation(program, "c");
    this.buffer = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, this.buffer);
    const a = gl.getAttribLocation(program, "a");
    gl.enableVertexAttribArray(a);
    gl.vertexAttribPointer(a, 2, gl.FLOAT, false, 0, 0);
    this.kind = "webgl";
  }

  // Geometry arrives as clip-space rectangles [x0, y0, x1, y1, ...].
  frame(width, height, colours, layers) {
    const gl = this.gl;
    gl.viewport(0, 0, width, height);
    const [r, g, b] = colours.bg;
    gl.clearColor(r, g, b, 1);
    gl.clear(gl.COLOR_BUFFER_BIT);
    for (const { rects, colour } of layers) {
      const n = rects.length / 4;
      if (!n) continue;
      if (!this.vertices || this.vertices.length < n * 12) {
        this.vertices = new Float32Array(Math.max(n * 12, 4096));
      }
      const v = this.vertices;
      for (let k = 0, o = 0; k < rects.length; k += 4, o += 12) {
        const x0 = rects[k];
        const y0 = rects[k + 1];
        const x1 = rects[k + 2];
        const y1 = rects[k + 3];
        v[o] = x0; v[o + 1] = y0; v[o + 2] = x1; v[o + 3] = y0; v[o + 4] = x0; v[o + 5] = y1;
        v[o + 6] = x0; v[o + 7] = y1; v[o + 8] = x1; v[o + 9] = y0; v[o + 10] = x1; v[o + 11] = y1;
      }
      gl.bufferData(gl.ARRAY_BUFFER, v.subarray(0, n * 12), gl.STREAM_DRAW);
      gl.uniform4f(this.colour, colour[0], colour[1], colour[2], 1);
      gl.drawArrays(gl.TRIANGLES, 0, n * 6);
    }
  }
}

class CanvasRenderer {
  constructor(canvas) {
    this.ctx = canvas.getContext("2d");
    if (!this.ctx) throw new Error("no 2D canvas");
    this.kind = "2d";
  }

  frame(width, height, colours, layers) {
    const ctx = this.ctx;
    const css = (c) => `rgb(${c.map((x) => Math.round(x * 255)).join(",")})`;
    ctx.fillStyle = css(colours.bg);
    ctx.fillRect(0, 0, width, height);
    const px = (x) => ((x + 1) / 2) * width;
    const py = (y) => ((1 - y) / 2) * height;
    for (const { rects, colour } of layers) {
      ctx.fillStyle = css(colour);
      for (let k = 0; k < rects.length; k += 4) {
        const x0 = px(rects[k]);
        const x1 = px(rects[k + 2]);
        const y0 = py(rects[k + 3]);
        const y1 = py(rects[k + 1]);
        ctx.fillRect(x0, y0, Math.max(1, x1 - x0), Math.max(1, y1 - y0));
      }
    }
  }
}

function addEvent(regions, kind, timeS) {
  if (kind === "BEGIN") {
    regions.push({ start: timeS, end: null });
  } else if (kind === "END") {
    const open = [...regions].reverse().find((r) => r.end === null);
    if (open) open.end = Math.max(open.start, timeS);
    else regions.push({ start: Math.max(0, timeS - 0.5), end: timeS });
  }
}

export class Waveform {
  constructor(canvas) {
    this.canvas = canvas;
    this.renderer = this.makeRenderer();
    this.analyser = null;
    this.clock = () => 0;
    this.columns = []; // {t, lo, hi}
    this.regions = []; // {start, end|null} in stream seconds
    this.localRegions = []; // the same, from the page's VAD
    this.samples = null;
    this.raf = 0;
    this.readColours();
    const scheme = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)");
    if (scheme && scheme.addEventListener) {
      scheme.addEventListener("change", () => {
        this.readColours();
        this.draw();
      });
    }
    if (window.ResizeObserver) new ResizeObserver(() => this.draw()).observe(canvas);
    this.draw();
  }

  makeRenderer() {
    try {
      const gl = new GlRenderer(this.canvas);
      this.canvas.addEventListener("webglcontextlost", (event) => {
        event.preventDefault();
        this.fallBackTo2d();
      });
      return gl;
    } catch {
      return new CanvasRenderer(this.canvas);
    }
  }

  /** A canvas that had a WebGL context cannot give a 2D one: swap in a fresh canvas. */
  fallBackTo2d() {
    const fresh = this.canvas.cloneNode(false);
    this.canvas.replaceWith(fresh);
    this.canvas = fresh;
    this.renderer = new CanvasRenderer(fresh);
    if (window.ResizeObserver) new ResizeObserver(() => this.draw()).observe(fresh);
    this.draw();
  }

  get kind() {
    return this.renderer.kind;
  }

  readColours() {
    const style = getComputedStyle(this.canvas);
    const get = (name, fallback) => hexColour(style.getPropertyValue(name), fallback);
    this.colours = {
      bg: get("--wave-bg", [0.93, 0.95, 0.97]),
      wave: get("--wave", [0.11, 0.3, 0.85]),
      speech: get("--speech", [0.73, 0.97, 0.82]),
      localSpeech: get("--speech-local", [0.09, 0.64, 0.29]),
      axis: get("--axis", [0.6, 0.64, 0.7]),
    };
  }

  /** Starts drawing from a live analyser; clock() gives the stream's seconds. */
  attach(analyser, clock) {
    this.analyser = analyser;
    this.clock = clock;
    this.columns = [];
    this.regions = [];
    this.localRegions = [];
    this.setLocalSpeech(false);
    this.samples = new Float32Array(analyser.fftSize);
    if (!this.raf) this.raf = requestAnimationFrame(() => this.tick());
  }

  /** Stops the animation; the last picture stays. */
  detach() {
    this.analyser = null;
    if (this.raf) cancelAnimationFrame(this.raf);
    this.raf = 0;
    this.draw();
  }

  speechEvent(kind, timeS) {
    addEvent(this.regions, kind, timeS);
  }

  /** The page's own VAD heard speech start or end (seconds since the capture started). */
  localSpeech(kind, timeS) {
    addEvent(this.localRegions, kind, timeS);
    this.setLocalSpeech(kind === "BEGIN");
  }

  setLocalSpeech(on) {
    const wrap = this.canvas.parentElement;
    if (wrap) wrap.dataset.localSpeech = String(on);
  }

  tick() {
    this.raf = 0;
    if (!this.analyser) return;
    this.analyser.getFloatTimeDomainData(this.samples);
    let lo = 0;
    let hi = 0;
    for (const s of this.samples) {
      if (s < lo) lo = s;
      else if (s > hi) hi = s;
    }
    const now = this.clock();
    this.columns.push({ t: now, lo, hi });
    while (this.columns.length && this.columns[0].t < now - WINDOW_S - 0.5) this.columns.shift();
    const recent = (r) => r.end === null || r.end > now - WINDOW_S;
    this.regions = this.regions.filter(recent);
    this.localRegions = this.localRegions.filter(recent);
    this.draw(now);
    this.raf = requestAnimationFrame(() => this.tick());
  }

  draw(now = this.columns.length ? this.columns[this.columns.length - 1].t : 0) {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const width = Math.max(1, Math.round(canvas.clientWidth * dpr));
    const height = Math.max(1, Math.round(canvas.clientHeight * dpr));
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const x = (t) => 1 - (2 * (now - t)) / WINDOW_S;
    const speech = [];
    for (const r of this.regions) {
      const x0 = Math.max(-1, x(r.start));
      const x1 = Math.min(1, x(r.end === null ? now : r.end));
      if (x1 > x0) speech.push(x0, -1, x1, 1);
    }
    // The page's VAD: a band along the bottom, a tenth of the height.
    const local = [];
    for (const r of this.localRegions) {
      const x0 = Math.max(-1, x(r.start));
      const x1 = Math.min(1, x(r.end === null ? now : r.end));
      if (x1 > x0) local.push(x0, -1, x1, -0.8);
    }
    const xPixel = 2 / width;
    const yPixel = 2 / height;
    const wave = [];
    const gain = 0.95;
    const cols = this.columns;
    for (let k = 0; k < cols.length; k++) {
      const c = cols[k];
      const x0 = x(c.t);
      const next = k + 1 < cols.length ? x(cols[k + 1].t) : x0 + xPixel;
      if (next < -1) continue;
      const lo = Math.max(-1, c.lo * gain);
      const hi = Math.min(1, c.hi * gain);
      wave.push(x0, Math.min(lo, -yPixel), Math.max(next, x0 + xPixel), Math.max(hi, yPixel));
    }
    const axis = [-1, -yPixel / 2, 1, yPixel / 2];
    this.renderer.frame(width, height, this.colours, [
      { rects: speech, colour: this.colours.speech },
      { rects: axis, colour: this.colours.axis },
      { rects: wave, colour: this.colours.wave },
      { rects: local, colour: this.colours.localSpeech },
    ]);
  }
}
