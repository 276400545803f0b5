"""The detector validation suite: synthesised clips with known answers, run by `aurax preflight` before any
training is paid for (and by the tests). A detector whose thresholds have drifted fails it.

Covers what a sub-bass detector gets wrong: silence, white and pink noise, stationary low tones, decaying
tones outside 50-150 Hz, kick patterns, 808s, sustained bass, hi-hats and shakers, piano, other genres; and
log drums across the pitch and decay range, with glides, in full mixes and under noise, at several rates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import synth
from .config import DetectorConfig
from .detector import detect

SECONDS = 3.0


@dataclass(frozen=True)
class ValidationCase:
    name: str
    expected: bool
    """True when the clip has log drums."""
    sample_rate: int
    make: Callable[[np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class CaseResult:
    name: str
    expected: bool
    detected: bool
    confidence: float
    events: int

    @property
    def passed(self) -> bool:
        return self.expected == self.detected


@dataclass(frozen=True)
class SuiteResult:
    cases: list[CaseResult]

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        text = f"{len(self.cases) - len(self.failures)}/{len(self.cases)} detector validation cases passed"
        if self.failures:
            text += "; failed: " + ", ".join(
                f"{c.name} (expected {'log drum' if c.expected else 'none'}, got "
                f"{'log drum' if c.detected else 'none'} with {c.events} events)" for c in self.failures)
        return text


def _negatives() -> list[ValidationCase]:
    s = synth
    sr = 32000
    cases = [
        ValidationCase("silence", False, sr, lambda rng: s.silence(sr, SECONDS)),
        ValidationCase("white-noise", False, sr, lambda rng: s.white_noise(sr, SECONDS, rng)),
        ValidationCase("pink-noise", False, 44100, lambda rng: s.pink_noise(44100, SECONDS, rng)),
    ]
    for f in (40.0, 60.0, 100.0, 140.0):
        cases.append(ValidationCase(f"stationary-tone-{f:.0f}hz", False, sr,
                                    lambda rng, f=f: s.tone(sr, f, SECONDS)))
    for f in (32.0, 40.0, 180.0, 250.0, 400.0):
        cases.append(ValidationCase(
            f"decaying-tone-{f:.0f}hz", False, sr,
            lambda rng, f=f: s.normalise(s.pattern(sr, SECONDS, 112, (0, 3, 6, 10),
                                                   lambda: s.tone(sr, f, 1.0, decay_ms=450.0)))))
    for name, kwargs in (("kick-four-on-floor", {}), ("kick-long-decay", {"decay_ms": 190.0}),
                         ("kick-deep-sweep", {"f_start": 230.0, "f_end": 45.0, "sweep_ms": 60.0}),
                         ("kick-no-click", {"click": 0.0, "decay_ms": 180.0})):
        cases.append(ValidationCase(name, False, sr, lambda rng, kw=kwargs: s.normalise(
            s.pattern(sr, SECONDS, 120, (0, 4, 8, 12), lambda: s.kick(sr, rng, **kw)))))
    for f0, decay in ((45.0, 1200.0), (55.0, 2000.0), (70.0, 1500.0)):
        cases.append(ValidationCase(
            f"808-{f0:.0f}hz-{decay:.0f}ms", False, sr, lambda rng, f0=f0, d=decay: s.normalise(
                s.pattern(sr, SECONDS + 1, 90, (0, 10), lambda: s.bass_808(sr, f0, rng, decay_ms=d)))))
    for f0 in (55.0, 82.0, 110.0):
        cases.append(ValidationCase(f"sustained-bass-{f0:.0f}hz", False, sr, lambda rng, f0=f0: s.normalise(
            s.pattern(sr, SECONDS, 112, (0, 8), lambda: s.sustained_bass(sr, f0, 1.0)))))
    cases += [
        ValidationCase("hihats-16ths", False, sr, lambda rng: s.normalise(
            s.pattern(sr, SECONDS, 112, tuple(range(16)), lambda: s.hihat(sr, rng)))),
        ValidationCase("shakers-16ths", False, 48000, lambda rng: s.normalise(
            s.pattern(48000, SECONDS, 112, tuple(range(16)), lambda: s.shaker(48000, rng), swing=0.1))),
        ValidationCase("piano-chords", False, sr, lambda rng: s.normalise(
            s.chord_track(sr, SECONDS, 112, rng, every_beats=1))),
        ValidationCase("piano-bass-notes", False, sr, lambda rng: s.normalise(
            s.pattern(sr, SECONDS, 112, (0, 3, 6, 10),
                      lambda: s.piano_note(sr, s.midi_hz(33 + rng.integers(0, 12)), rng, seconds=1.0)))),
        ValidationCase("house-124bpm", False, sr, lambda rng: s.house_groove(sr, SECONDS + 1, rng)),
        ValidationCase("hiphop-808", False, 22050, lambda rng: s.hiphop_groove(22050, SECONDS + 1, rng)),
        ValidationCase("rock", False, 44100, lambda rng: s.rock_groove(44100, SECONDS + 1, rng)),
        ValidationCase("ambient-pads", False, sr, lambda rng: s.ambient_pads(sr, SECONDS + 1, rng)),
    ]
    return cases


def _positives() -> list[ValidationCase]:
    s = synth
    sr = 32000
    cases = []
    flat = (0,) * len(s.LOG_DRUM_STEPS)
    for root in (52.0, 70.0, 95.0, 125.0, 145.0):
        for decay in (300.0, 450.0, 600.0):
            cases.append(ValidationCase(
                f"log-drum-{root:.0f}hz-{decay:.0f}ms", True, sr,
                lambda rng, r=root, d=decay: s.normalise(
                    s.log_drum_line(sr, SECONDS, 112, rng, root_hz=r, decay_ms=d, degrees=flat))))
    for glide in (-7.0, -3.0, 4.0, 7.0):
        cases.append(ValidationCase(
            f"log-drum-glide-{glide:+.0f}st", True, sr, lambda rng, g=glide: s.normalise(
                s.log_drum_line(sr, SECONDS, 112, rng, root_hz=62.0, glide_semitones=g))))
    cases.append(ValidationCase("log-drum-bassline-walk", True, 44100, lambda rng: s.normalise(
        s.log_drum_line(44100, SECONDS, 110, rng, root_hz=58.0))))
    for bpm, root, decay in ((108.0, 55.0, 400.0), (112.0, 62.0, 450.0), (116.0, 73.0, 550.0)):
        cases.append(ValidationCase(
            f"amapiano-mix-{bpm:.0f}bpm", True, sr,
            lambda rng, b=bpm, r=root, d=decay: s.amapiano_groove(sr, SECONDS + 1, rng, bpm=b, root_hz=r,
                                                                   decay_ms=d)))
    cases.append(ValidationCase("amapiano-mix-glides-48k", True, 48000, lambda rng: s.amapiano_groove(
        48000, SECONDS + 1, rng, glide_semitones=5.0)))
    for snr, colour in ((12.0, "white"), (6.0, "pink")):
        cases.append(ValidationCase(f"log-drum-under-{colour}-noise-{snr:.0f}db", True, sr,
                                    lambda rng, n=snr, c=colour: s.add_noise(
                                        s.log_drum_line(sr, SECONDS, 112, rng, root_hz=65.0), n, rng, c)))
    cases.append(ValidationCase("amapiano-mix-under-noise-15db", True, sr, lambda rng: s.add_noise(
        s.amapiano_groove(sr, SECONDS + 1, rng), 15.0, rng)))
    return cases


def validation_cases() -> list[ValidationCase]:
    return _negatives() + _positives()


def run_validation_suite(config: DetectorConfig | None = None, seed: int = 7) -> SuiteResult:
    """Detect every case; each case draws from its own generator so the suite is order-independent."""
    results = []
    for index, case in enumerate(validation_cases()):
        samples = case.make(np.random.default_rng([seed, index]))
        detection = detect(samples, case.sample_rate, config)
        results.append(CaseResult(case.name, case.expected, detection.log_drum, detection.confidence,
                                  len(detection.events)))
    return SuiteResult(results)
