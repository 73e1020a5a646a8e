"""A corpus that behaves more like real speech than bench/corpus.py's clean espeak-ng fables.

Three kinds of file, each with its reference text for WER:

* ``human``: recordings of people reading, fetched at run time from the Debian package
  ``pocketsphinx-testdata`` (pinned below; BSD-2, Carnegie Mellon University): five LibriVox
  passages of Jane Austen's *Sense and Sensibility* (public domain; one reader) and five
  utterances of spoken playing cards, with the transcripts the package ships. About 34 s in all.
* ``longform``: several-minute files made by joining clips with pauses (seeded): the human
  recordings shuffled and joined (``human-long``, ~3 min) and espeak-ng fables at several
  voices and rates with noise mixed in (``noisy-long``, ~4 min). ``human-long5``: human-long
  shuffled with five seeds (20-24), where one window's loop weighs a fifth as much.
* ``noisy``: the same espeak-ng fables one per file, each at a voice, a rate (120-230 words a
  minute) and a signal-to-noise ratio (8-20 dB, white or brown noise) drawn from a seed.

Nothing big is committed: the package is fetched with ``apt-get download`` (its ``.deb`` is
unpacked with ``dpkg -x`` into ``bench/out/``), the rest is synthesised.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

from corpus import FABLES, Clip

SAMPLE_RATE = 16000
PS_PACKAGE = "pocketsphinx-testdata"
PS_VERSION = "0.8+5prealpha+1-15"
_PS_DATA = Path("usr/share/pocketsphinx/test/data")
# (folder, transcription file) pairs inside the package; lines are "<s> words </s> (id)".
_PS_SETS = (("librivox", "transcription"), ("cards", "cards.transcription"))
_LINE = re.compile(r"^<s>\s*(.*?)\s*</s>\s*\((\S+)\)\s*$")

NOISY_VOICES = ("en-us", "en", "en-gb-x-rp", "en-us+f3", "en+m3", "en-us+f2")
NOISY_RATES = (120, 140, 165, 190, 210, 230)


def fetch_pocketsphinx_testdata(root: Path) -> Path:
    """The package's test-data folder, downloaded and unpacked into ``root`` once."""
    data = root / PS_VERSION / _PS_DATA
    if data.is_dir():
        return data
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed to fetch {PS_PACKAGE} (a Debian package)")
    work = root / PS_VERSION
    work.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(
        ["apt-get", "download", f"{PS_PACKAGE}={PS_VERSION}"],
        cwd=work,
        capture_output=True,
        text=True,
    )
    debs = list(work.glob(f"{PS_PACKAGE}_*.deb"))
    if out.returncode != 0 or not debs:
        raise SystemExit(
            f"could not download {PS_PACKAGE}={PS_VERSION} (run apt-get update first?): "
            f"{out.stderr.strip()[-300:]}"
        )
    subprocess.run(["dpkg", "-x", str(debs[0]), str(work)], check=True)
    debs[0].unlink()
    return data


def human_clips(root: Path) -> list[Clip]:
    """The package's recordings of people speaking, with their shipped transcripts."""
    data = fetch_pocketsphinx_testdata(root)
    clips = []
    for folder, listing in _PS_SETS:
        for line in (data / folder / listing).read_text().splitlines():
            m = _LINE.match(line.strip())
            if m is None:
                continue
            text, ident = m.group(1), m.group(2)
            path = data / folder / f"{ident}.wav"
            with wave.open(str(path)) as w:
                clips.append(Clip(path, text, w.getnframes() / w.getframerate()))
    if not clips:
        raise SystemExit(f"no transcribed recordings found under {data}")
    return clips


def _read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise SystemExit(f"{path}: expected 16-kHz mono 16-bit WAV")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0


def _write(path: Path, audio: np.ndarray) -> None:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    tmp = path.with_suffix(".part")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    tmp.rename(path)


def _espeak(path: Path, voice: str, wpm: int, text: str) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed: apt-get install espeak-ng")
    if not path.exists():
        raw = path.with_suffix(".raw.wav")
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        # espeak-ng writes 22.05 kHz; resample once with sox-free numpy (linear is enough
        # for a benchmark input the engines both read).
        with wave.open(str(raw)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        raw.unlink()
        x = pcm.astype(np.float32) / 32768.0
        n = int(len(x) * SAMPLE_RATE / rate)
        _write(path, np.interp(np.arange(n) * rate / SAMPLE_RATE, np.arange(len(x)), x))
    return _read(path)


def _noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    if kind == "white":
        return white
    brown = np.cumsum(white)
    brown -= np.convolve(brown, np.ones(801) / 801, mode="same")  # drop the drift
    return brown.astype(np.float32)


def _mix(rng: np.random.Generator, speech: np.ndarray, snr_db: float, kind: str) -> np.ndarray:
    noise = _noise(rng, len(speech), kind)
    p_speech = float(np.mean(speech[np.abs(speech) > 1e-3] ** 2)) if speech.any() else 1.0
    scale = np.sqrt(p_speech / (float(np.mean(noise**2)) * 10 ** (snr_db / 10)))
    return speech + scale * noise


def noisy_clips(out_dir: Path, seed: int = 20) -> list[Clip]:
    """Every fable at a seeded voice, rate, noise kind and SNR; one file each."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    clips = []
    for i, text in enumerate(FABLES):
        voice, wpm = rng.choice(NOISY_VOICES), rng.choice(NOISY_RATES)
        snr, kind = rng.uniform(8.0, 20.0), rng.choice(("white", "brown"))
        path = out_dir / f"noisy{i:02d}-s{seed}-{voice}-{wpm}-{kind}-{snr:.1f}.wav"
        if not path.exists():
            clean = _espeak(out_dir / f"clean{i:02d}-{voice}-{wpm}.wav", voice, wpm, text)
            _write(path, _mix(np.random.default_rng(seed * 100 + i), clean, snr, kind))
        clips.append(Clip(path, text, len(_read(path)) / SAMPLE_RATE))
    return clips


def join_with_pauses(
    path: Path, clips: list[Clip], seed: int, pause_s: tuple[float, float] = (1.0, 2.5)
) -> Clip:
    """One long file: ``clips`` in order, separated by seeded pauses of low room noise."""
    if not path.exists():
        rng = np.random.default_rng(seed)
        parts = []
        for c in clips:
            gap = int(rng.uniform(*pause_s) * SAMPLE_RATE)
            parts.append((rng.standard_normal(gap) * 1e-3).astype(np.float32))
            parts.append(_read(c.path) * float(rng.uniform(0.6, 1.0)))
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, np.concatenate(parts))
    return Clip(path, " ".join(c.text for c in clips), len(_read(path)) / SAMPLE_RATE)


def human_long(out_dir: Path, seed: int = 20) -> Clip:
    """~4 min of the human recordings: shuffled, five rounds, joined with pauses."""
    human = human_clips(out_dir / "pkg")
    rng = random.Random(seed)
    rounds: list[Clip] = []
    for _ in range(5):  # a different order each round, so no window repeats the last
        order = human[:]
        rng.shuffle(order)
        rounds.extend(order)
    return join_with_pauses(out_dir / f"human-long-s{seed}.wav", rounds, seed)


def longform_clips(out_dir: Path, seed: int = 20) -> list[Clip]:
    """``human_long`` and ~4 min of noisy espeak."""
    noisy = noisy_clips(out_dir / "noisy", seed)
    return [
        human_long(out_dir, seed),
        join_with_pauses(out_dir / f"noisy-long-s{seed}.wav", noisy[:8], seed + 1),
    ]


def human_long_seeds(out_dir: Path, seeds: range = range(20, 25)) -> list[Clip]:
    """``human-long`` shuffled with several seeds: one prompt-induced loop in a 460-word file
    moves its WER by 5-10 pp, so a comparison of decoders needs several such files."""
    return [human_long(out_dir, seed) for seed in seeds]


KINDS = ("human", "noisy", "longform", "human-long", "human-long5", "noisy-long")


def build(kind: str, out_dir: Path) -> list[Clip]:
    """The clips of one corpus kind (``human-long`` / ``noisy-long``: one long-form file)."""
    if kind == "human":
        return human_clips(out_dir / "pkg")
    if kind == "noisy":
        return noisy_clips(out_dir / "noisy")
    if kind == "longform":
        return longform_clips(out_dir)
    if kind == "human-long":
        return [human_long(out_dir)]
    if kind == "human-long5":
        return human_long_seeds(out_dir)
    if kind == "noisy-long":
        return longform_clips(out_dir)[1:]
    raise SystemExit(f"unknown corpus {kind!r}: choose {', '.join(KINDS)}")
