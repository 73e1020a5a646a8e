// Whisper's vocabulary in the browser: byte-level BPE detokenisation from tokenizer.json (the
// model's own file, as inference/tokenizer.py reads it) and the special tokens, timestamps and
// suppress lists from model_config.json. Pure module (Worker and Node).

export const TIME_PRECISION_S = 0.02; // one timestamp step: 2 encoder frames of 10 ms

// GPT-2's byte ↔ character map: printable Latin-1 bytes stand for themselves, the other 68
// bytes for the characters from U+0100 on, in byte order.
function unicodeToByte() {
  const map = new Map();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map.set(String.fromCodePoint(printable ? b : 256 + extra++), b);
  }
  return map;
}

export class WhisperVocabulary {
  /**
   * @param {object} tokenizer tokenizer.json, parsed (a byte-level BPE model)
   * @param {object} config model_config.json, parsed (special_tokens, timestamp_begin, ...)
   */
  constructor(tokenizer, config) {
    const vocab = tokenizer?.model?.vocab;
    if (tokenizer?.model?.type !== "BPE" || !vocab || tokenizer?.decoder?.type !== "ByteLevel") {
      throw new Error("tokenizer.json is not a byte-level BPE tokenizer (Whisper's)");
    }
    const specials = config?.special_tokens || {};
    for (const name of ["eot", "sot", "transcribe", "translate", "no_speech", "no_timestamps"]) {
      if (!Number.isInteger(specials[name])) throw new Error(`model_config.json lacks special_tokens.${name}`);
    }
    if (!Number.isInteger(config.timestamp_begin)) throw new Error("model_config.json lacks timestamp_begin");
    this.specials = specials;
    this.eot = specials.eot;
    this.sot = specials.sot;
    this.noSpeech = specials.no_speech;
    this.noTimestamps = specials.no_timestamps;
    this.timestampBegin = config.timestamp_begin;
    this.languages = config.languages || {};
    this.suppressTokens = config.suppress_tokens || [];
    this.beginSuppressTokens = config.begin_suppress_tokens || [];
    this.pieces = [];
    for (const [piece, id] of Object.entries(vocab)) this.pieces[id] = piece;
    this.bytes = unicodeToByte();
    this.utf8 = new TextDecoder("utf-8"); // replaces broken sequences with U+FFFD, as tokenizers does
  }

  get multilingual() {
    return Object.keys(this.languages).length > 0;
  }

  /** <|startoftranscript|>, then on multilingual models the language and the task. */
  sotSequence(language = null, task = "transcribe") {
    if (task !== "transcribe" && task !== "translate") throw new Error(`task must be transcribe or translate, not ${task}`);
    if (!this.multilingual) return [this.sot];
    if (!(language in this.languages)) throw new Error(`unknown language code ${JSON.stringify(language)} for this model`);
    return [this.sot, this.languages[language], this.specials[task]];
  }

  /** Text of the ordinary tokens (below <|endoftext|>); special and timestamp tokens left out. */
  decode(ids) {
    const out = [];
    for (const id of ids) {
      if (id >= this.eot) continue;
      const piece = this.pieces[id];
      if (piece === undefined) throw new Error(`token ${id} is not in the vocabulary`);
      for (const ch of piece) {
        const b = this.bytes.get(ch);
        if (b !== undefined) out.push(b);
      }
    }
    return this.utf8.decode(new Uint8Array(out));
  }

  /** Seconds of a timestamp token into its window. */
  timeOf(token) {
    return (token - this.timestampBegin) * TIME_PRECISION_S;
  }
}
