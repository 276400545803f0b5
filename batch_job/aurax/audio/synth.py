"""Synthesised test material for the log-drum detector and the AURA-X score.

The preflight validation suite (which gates every training run), the tests and the benchmark all draw their
cases from here, so it lives in the product. Every generator is a pure function of its arguments and a
`numpy.random.Generator`: the same seed gives the same samples.

Sounds follow the published descriptions of the instruments (see docs/scoring.md): the Amapiano log drum is
a pitched percussive bass (a short woody knock decaying into a near-pure tone, optionally gliding); a kick
sweeps its pitch down fast, decays in < 200 ms and clicks; an 808 rings for over a second.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

DB_PER_NEPER = 20.0 * np.log10(np.e)  # 8.686 dB: a fall of 30 dB is 30 / 8.686 time constants
Signal = np.ndarray


def _time(sr: int, seconds: float) -> np.ndarray:
    return np.arange(int(round(sr * seconds)), dtype=np.float64) / sr


def decay_envelope(t: np.ndarray, decay_ms: float, attack_ms: float = 3.0) -> np.ndarray:
    """Linear attack, then an exponential decay reaching -30 dB `decay_ms` after the peak."""
    tau = decay_ms / 1000.0 / (30.0 / DB_PER_NEPER)
    attack = attack_ms / 1000.0
    env = np.exp(-np.maximum(t - attack, 0.0) / tau)
    return np.where(t < attack, t / attack, env)


def _glide_phase(t: np.ndarray, sr: int, f_end: float, f_start: float, glide_ms: float) -> np.ndarray:
    """Phase of a tone whose frequency moves exponentially from f_start to f_end; time constant glide_ms/3."""
    tau = max(glide_ms, 1e-3) / 1000.0 / 3.0
    freq = f_end * (f_start / f_end) ** np.exp(-t / tau)
    return 2 * np.pi * np.cumsum(freq) / sr


def _band_noise(rng: np.random.Generator, n: int, sr: int, low_hz: float, high_hz: float) -> np.ndarray:
    from scipy.signal import butter, sosfilt

    high = min(high_hz, 0.45 * sr)
    sos = butter(2, [low_hz, high], btype="bandpass", fs=sr, output="sos")
    return sosfilt(sos, rng.standard_normal(n))


def log_drum(sr: int, f0: float, decay_ms: float, rng: np.random.Generator, glide_semitones: float = 0.0,
             glide_ms: float = 90.0, knock: float = 0.25, seconds: float | None = None) -> Signal:
    """One log-drum note: woody knock + near-pure tone at f0 decaying to -30 dB in `decay_ms`.

    `glide_semitones` starts the pitch that far from f0 and slides onto it, as producers do between notes.
    """
    t = _time(sr, seconds if seconds is not None else decay_ms / 1000.0 * 2.2)
    phase = _glide_phase(t, sr, f0, f0 * 2 ** (glide_semitones / 12.0), glide_ms)
    body = np.sin(phase) * decay_envelope(t, decay_ms, attack_ms=4.0)
    overtone = 0.08 * np.sin(2 * phase + 0.3) * decay_envelope(t, decay_ms * 0.4, attack_ms=4.0)
    knock_noise = _band_noise(rng, t.size, sr, 300.0, 1500.0)
    knock_part = knock * knock_noise / (np.abs(knock_noise).max() + 1e-12) * decay_envelope(t, 25.0, 1.0)
    return (body + overtone + knock_part).astype(np.float32)


def kick(sr: int, rng: np.random.Generator, f_start: float = 160.0, f_end: float = 52.0,
         sweep_ms: float = 40.0, decay_ms: float = 160.0, click: float = 0.6) -> Signal:
    """Kick drum: fast downward pitch sweep, decay under 200 ms, broadband click."""
    t = _time(sr, decay_ms / 1000.0 * 1.6)
    body = np.sin(_glide_phase(t, sr, f_end, f_start, sweep_ms)) * decay_envelope(t, decay_ms, attack_ms=1.0)
    click_noise = _band_noise(rng, t.size, sr, 1500.0, 9000.0)
    click_part = click * click_noise / (np.abs(click_noise).max() + 1e-12) * decay_envelope(t, 8.0, 0.2)
    return (body + click_part).astype(np.float32)


def bass_808(sr: int, f0: float, rng: np.random.Generator, decay_ms: float = 1800.0,
             drive: float = 1.5) -> Signal:
    """Hip-hop 808: short pitch drop onto f0, long decay (> 1 s), soft saturation."""
    t = _time(sr, decay_ms / 1000.0 * 1.2)
    tone = np.sin(_glide_phase(t, sr, f0, f0 * 1.5, 30.0)) * decay_envelope(t, decay_ms, attack_ms=2.0)
    click_noise = _band_noise(rng, t.size, sr, 2000.0, 8000.0)
    saturated = np.tanh(drive * tone) / np.tanh(drive)
    return (saturated + 0.1 * click_noise * decay_envelope(t, 5.0, 0.2)).astype(np.float32)


def sustained_bass(sr: int, f0: float, seconds: float) -> Signal:
    """A held synth-bass note (band-limited sawtooth), 10 ms attack and release."""
    t = _time(sr, seconds)
    harmonics = np.arange(1, int(min(30, 0.45 * sr / f0)) + 1)
    saw = (np.sin(2 * np.pi * f0 * t[:, None] * harmonics) / harmonics).sum(axis=1)
    ramp = np.clip(np.minimum(t, seconds - t) / 0.01, 0.0, 1.0)
    return (0.6 * saw * ramp).astype(np.float32)


def tone(sr: int, freq: float, seconds: float, decay_ms: float | None = None) -> Signal:
    """A pure tone: stationary, or decaying to -30 dB in `decay_ms`."""
    t = _time(sr, seconds)
    env = decay_envelope(t, decay_ms, 4.0) if decay_ms else np.clip(t / 0.01, 0, 1)
    return (np.sin(2 * np.pi * freq * t) * env).astype(np.float32)


def white_noise(sr: int, seconds: float, rng: np.random.Generator) -> Signal:
    return (0.3 * rng.standard_normal(int(sr * seconds))).astype(np.float32)


def pink_noise(sr: int, seconds: float, rng: np.random.Generator) -> Signal:
    """1/f noise by spectral shaping of white noise."""
    n = int(sr * seconds)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0.0
    pink = np.fft.irfft(spectrum, n)
    return (0.3 * pink / (pink.std() + 1e-12)).astype(np.float32)


def brown_noise(sr: int, seconds: float, rng: np.random.Generator) -> Signal:
    """1/f^2 (Brownian) noise: integrated white noise with its drift removed."""
    walk = np.cumsum(rng.standard_normal(int(sr * seconds)))
    walk -= np.linspace(walk[0], walk[-1], walk.size)
    return (0.3 * walk / (walk.std() + 1e-12)).astype(np.float32)


def drone(sr: int, f0: float, seconds: float) -> Signal:
    """A steady tone with two harmonics and no attack or decay (an organ or synth drone)."""
    t = _time(sr, seconds)
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.15 * np.sin(4 * np.pi * f0 * t + 1.0)
            + 0.08 * np.sin(6 * np.pi * f0 * t + 2.0)).astype(np.float32)


def sustained_chord(sr: int, notes: Sequence[float], seconds: float) -> Signal:
    """Notes (MIDI) held for the whole clip, faded in and out over 50 ms."""
    t = _time(sr, seconds)
    out = sum(np.sin(2 * np.pi * midi_hz(n) * t + n) for n in notes) / len(notes)
    fade = np.clip(np.minimum(t, seconds - t) / 0.05, 0.0, 1.0)
    return (0.5 * out * fade).astype(np.float32)


def random_clicks(sr: int, seconds: float, rng: np.random.Generator, per_second: float = 3.0) -> Signal:
    """Hi-hat-like clicks at random (Poisson) times: onsets without a pulse."""
    out = np.zeros(int(round(sr * seconds)), dtype=np.float32)
    for at in rng.uniform(0.0, seconds, rng.poisson(per_second * seconds)):
        place(out, hihat(sr, rng), float(at), sr)
    return normalise(out)


def hihat(sr: int, rng: np.random.Generator, decay_ms: float = 45.0, open_hat: bool = False) -> Signal:
    t = _time(sr, (decay_ms * (4 if open_hat else 1)) / 1000.0 * 1.5)
    noise = _band_noise(rng, t.size, sr, 6000.0, 14000.0)
    return (noise / (np.abs(noise).max() + 1e-12) * decay_envelope(t, decay_ms * (4 if open_hat else 1), 0.5)
            ).astype(np.float32)


def shaker(sr: int, rng: np.random.Generator, decay_ms: float = 70.0) -> Signal:
    """A shaker stroke: band noise with a soft attack."""
    t = _time(sr, decay_ms / 1000.0 * 1.5)
    noise = _band_noise(rng, t.size, sr, 4000.0, 12000.0)
    return (noise / (np.abs(noise).max() + 1e-12) * decay_envelope(t, decay_ms, 12.0)).astype(np.float32)


def snare(sr: int, rng: np.random.Generator) -> Signal:
    t = _time(sr, 0.25)
    noise = _band_noise(rng, t.size, sr, 1000.0, 9000.0)
    body = np.sin(2 * np.pi * 190 * t)
    return ((0.7 * noise / (np.abs(noise).max() + 1e-12) + 0.5 * body) * decay_envelope(t, 180.0, 1.0)
            ).astype(np.float32)


def piano_note(sr: int, f0: float, rng: np.random.Generator, seconds: float = 1.5) -> Signal:
    """Additive piano: slightly inharmonic partials, higher ones decaying faster, hammer noise."""
    t = _time(sr, seconds)
    out = np.zeros_like(t)
    for n in range(1, 16):
        freq = n * f0 * np.sqrt(1 + 0.0004 * n * n)
        if freq > 0.45 * sr:
            break
        out += (1.0 / n ** 0.7) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi)) \
            * decay_envelope(t, 3000.0 / (1 + 0.35 * n), 2.0)
    hammer = _band_noise(rng, t.size, sr, 500.0, 4000.0) * decay_envelope(t, 15.0, 0.5)
    return (0.3 * out + 0.05 * hammer / (np.abs(hammer).max() + 1e-12)).astype(np.float32)


def midi_hz(note: float) -> float:
    return 440.0 * 2 ** ((note - 69) / 12.0)


def chord(sr: int, notes: Sequence[float], rng: np.random.Generator, seconds: float = 1.5,
          voice: Callable[..., Signal] | None = None) -> Signal:
    """Several notes (MIDI numbers) struck together."""
    make = voice or piano_note
    parts = [make(sr, midi_hz(n), rng, seconds=seconds) for n in notes]
    return (np.sum(parts, axis=0) / len(parts) * 2.0).astype(np.float32)


def pad(sr: int, notes: Sequence[float], seconds: float, rng: np.random.Generator) -> Signal:
    """Ambient pad: detuned sine stacks with slow attack and release."""
    t = _time(sr, seconds)
    out = np.zeros_like(t)
    for note in notes:
        for detune in (-0.08, 0.0, 0.08):
            f = midi_hz(note + detune)
            out += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) + 0.3 * np.sin(4 * np.pi * f * t)
    env = np.clip(np.minimum(t, seconds - t) / 1.5, 0.0, 1.0)
    return (0.15 * out * env / len(notes)).astype(np.float32)


def power_chord(sr: int, root: float, seconds: float, rng: np.random.Generator) -> Signal:
    """Distorted guitar power chord (root, fifth, octave)."""
    t = _time(sr, seconds)
    raw = sum(np.sin(2 * np.pi * midi_hz(root + i) * t + rng.uniform(0, 6)) for i in (0, 7, 12))
    return (0.3 * np.tanh(4 * raw) * decay_envelope(t, 4000.0, 5.0)).astype(np.float32)


def place(total: np.ndarray, sound: Signal, at_s: float, sr: int, gain: float = 1.0) -> None:
    """Add `sound` into `total` starting at `at_s` seconds (clipped at the end)."""
    start = int(round(at_s * sr))
    if start >= total.size:
        return
    end = min(total.size, start + sound.size)
    total[start:end] += gain * sound[: end - start]


def normalise(x: np.ndarray, peak: float = 0.9) -> Signal:
    top = float(np.abs(x).max())
    return (x * (peak / top) if top > 0 else x).astype(np.float32)


def add_noise(x: Signal, snr_db: float, rng: np.random.Generator, colour: str = "white") -> Signal:
    """`x` plus white or pink noise at the given signal-to-noise ratio (power over the whole clip)."""
    noise = rng.standard_normal(x.size)
    if colour == "pink":
        spectrum = np.fft.rfft(noise)
        spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
        spectrum[0] = 0
        noise = np.fft.irfft(spectrum, x.size)
    signal_rms = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    noise *= signal_rms * 10 ** (-snr_db / 20) / (noise.std() + 1e-12)
    return normalise(x + noise)


# --- patterns ----------------------------------------------------------------------------------------------

#: Log-drum bassline rhythm in sixteenths of a bar (4/4), a typical syncopated Amapiano pattern.
LOG_DRUM_STEPS = (0, 3, 6, 10, 12, 14)
#: Scale degrees (semitones) the bassline walks over.
LOG_DRUM_DEGREES = (0, 0, 3, 5, 7, 3)
#: Jazzy voicings (MIDI): minor 9th, major 7th, dominant 9th.
JAZZ_CHORDS = ((57, 60, 64, 67, 71), (53, 57, 60, 64), (55, 59, 62, 65, 69), (52, 55, 59, 62, 66))


def log_drum_line(sr: int, seconds: float, bpm: float, rng: np.random.Generator, root_hz: float = 65.0,
                  decay_ms: float = 450.0, glide_semitones: float = 0.0,
                  steps: Sequence[int] = LOG_DRUM_STEPS, degrees: Sequence[int] = LOG_DRUM_DEGREES) -> Signal:
    """A log-drum bassline: notes on `steps` (sixteenths) of every bar, walking `degrees` above `root_hz`."""
    total = np.zeros(int(sr * seconds))
    sixteenth = 60.0 / bpm / 4
    bar = 0
    while bar * 16 * sixteenth < seconds:
        for i, step in enumerate(steps):
            f0 = root_hz * 2 ** (degrees[i % len(degrees)] / 12.0)
            glide = glide_semitones if i % 2 else 0.0
            note = log_drum(sr, f0, decay_ms, rng, glide_semitones=glide)
            place(total, note, (bar * 16 + step) * sixteenth, sr)
        bar += 1
    return total.astype(np.float32)


def pattern(sr: int, seconds: float, bpm: float, steps: Sequence[int], sound: Callable[[], Signal],
            gain: float = 1.0, swing: float = 0.0, jitter: float = 0.0,
            rng: np.random.Generator | None = None) -> Signal:
    """`sound()` on the given sixteenth steps of every bar."""
    total = np.zeros(int(sr * seconds))
    sixteenth = 60.0 / bpm / 4
    bar = 0
    while bar * 16 * sixteenth < seconds:
        for step in steps:
            shift = swing * sixteenth if step % 2 else 0.0
            if jitter and rng is not None:
                shift += rng.normal(0, jitter)
            place(total, sound(), max(0.0, (bar * 16 + step) * sixteenth + shift), sr, gain)
        bar += 1
    return total.astype(np.float32)


def chord_track(sr: int, seconds: float, bpm: float, rng: np.random.Generator, every_beats: int = 4,
                voicings: Sequence[Sequence[float]] = JAZZ_CHORDS, sustain: bool = False) -> Signal:
    total = np.zeros(int(sr * seconds))
    beat = 60.0 / bpm
    i = 0
    while i * every_beats * beat < seconds:
        notes = voicings[i % len(voicings)]
        length = every_beats * beat * 1.2
        sound = pad(sr, notes, length, rng) if sustain else chord(sr, notes, rng, seconds=length)
        place(total, sound, i * every_beats * beat, sr)
        i += 1
    return total.astype(np.float32)


# --- genres ------------------------------------------------------------------------------------------------

def amapiano_groove(sr: int, seconds: float, rng: np.random.Generator, bpm: float = 112.0,
                    root_hz: float = 62.0, decay_ms: float = 450.0, glide_semitones: float = 0.0) -> Signal:
    """Log-drum bassline, sparse kick, rolling 16th shakers, jazzy piano chords."""
    mix = 0.9 * log_drum_line(sr, seconds, bpm, rng, root_hz=root_hz, decay_ms=decay_ms,
                              glide_semitones=glide_semitones)
    mix += pattern(sr, seconds, bpm, (0, 8), lambda: kick(sr, rng), gain=0.55)
    mix += pattern(sr, seconds, bpm, tuple(range(16)), lambda: shaker(sr, rng), gain=0.12, swing=0.12,
                   jitter=0.003, rng=rng)
    mix += 0.45 * chord_track(sr, seconds, bpm, rng, every_beats=2)
    return normalise(mix)


def house_groove(sr: int, seconds: float, rng: np.random.Generator, bpm: float = 124.0) -> Signal:
    """Four-on-the-floor kick, off-beat open hats, 16th closed hats, sustained bass, chord stabs."""
    mix = pattern(sr, seconds, bpm, (0, 4, 8, 12), lambda: kick(sr, rng), gain=0.8)
    mix += pattern(sr, seconds, bpm, (2, 6, 10, 14), lambda: hihat(sr, rng, open_hat=True), gain=0.12)
    mix += pattern(sr, seconds, bpm, tuple(range(16)), lambda: hihat(sr, rng), gain=0.06)
    bass = np.zeros(int(sr * seconds))
    for i, at in enumerate(np.arange(0, seconds, 60.0 / bpm * 2)):
        place(bass, sustained_bass(sr, (55.0, 55.0, 65.4, 49.0)[i % 4], 60.0 / bpm * 1.8), at, sr, 0.35)
    mix += bass + 0.35 * chord_track(sr, seconds, bpm, rng, every_beats=4)
    return normalise(mix)


def hiphop_groove(sr: int, seconds: float, rng: np.random.Generator, bpm: float = 88.0) -> Signal:
    """Boom-bap/trap: 808 bass notes, kick, snare on 2 and 4, 8th hats."""
    mix = pattern(sr, seconds, bpm, (0, 7, 10), lambda: kick(sr, rng), gain=0.6)
    mix += pattern(sr, seconds, bpm, (4, 12), lambda: snare(sr, rng), gain=0.5)
    mix += pattern(sr, seconds, bpm, (0, 2, 4, 6, 8, 10, 12, 14), lambda: hihat(sr, rng), gain=0.1)
    bass = np.zeros(int(sr * seconds))
    for i, at in enumerate(np.arange(0, seconds, 60.0 / bpm * 2)):
        place(bass, bass_808(sr, (43.7, 49.0, 41.2, 55.0)[i % 4], rng), at, sr, 0.8)
    return normalise(mix + bass)


def rock_groove(sr: int, seconds: float, rng: np.random.Generator, bpm: float = 132.0) -> Signal:
    """Kick on 1 and 3, snare on 2 and 4, 8th hats, distorted power chords."""
    mix = pattern(sr, seconds, bpm, (0, 8, 10), lambda: kick(sr, rng, decay_ms=120.0), gain=0.6)
    mix += pattern(sr, seconds, bpm, (4, 12), lambda: snare(sr, rng), gain=0.6)
    mix += pattern(sr, seconds, bpm, (0, 2, 4, 6, 8, 10, 12, 14), lambda: hihat(sr, rng), gain=0.12)
    guitar = np.zeros(int(sr * seconds))
    for i, at in enumerate(np.arange(0, seconds, 60.0 / bpm * 2)):
        place(guitar, power_chord(sr, (40, 43, 45, 38)[i % 4], 60.0 / bpm * 2, rng), at, sr)
    return normalise(mix + 0.5 * guitar)


def ambient_pads(sr: int, seconds: float, rng: np.random.Generator) -> Signal:
    return normalise(chord_track(sr, seconds, 60.0, rng, every_beats=4, sustain=True))


def silence(sr: int, seconds: float) -> Signal:
    return np.zeros(int(sr * seconds), dtype=np.float32)
