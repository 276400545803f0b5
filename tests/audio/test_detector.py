"""The log-drum detector on synthesised cases: its measurements, its verdicts, and its thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from aurax.audio import synth
from aurax.audio.config import DetectorConfig
from aurax.audio.detector import AudioTooShortError, detect
from aurax.audio.validation import run_validation_suite, validation_cases

SR = 32000
FLAT = (0,) * len(synth.LOG_DRUM_STEPS)


def line(f0: float, decay_ms: float, seed: int = 0, **kwargs: object) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return synth.normalise(synth.log_drum_line(SR, 3.0, 112, rng, root_hz=f0, decay_ms=decay_ms, degrees=FLAT,
                                               **kwargs))


@pytest.mark.parametrize("f0", [55.0, 80.0, 120.0, 145.0])
@pytest.mark.parametrize("decay_ms", [300.0, 450.0, 600.0])
def test_measures_fundamental_and_decay_of_each_event(f0: float, decay_ms: float) -> None:
    result = detect(line(f0, decay_ms), SR)
    assert result.log_drum and result.confidence == 1.0
    # 6 notes per bar at 112 BPM over 3 s: bar one, then three notes of bar two, the last 50 ms before the end
    # (too little left to measure its decay, so it is not counted)
    assert len(result.events) == 8
    for event in result.events:
        assert event.f0_hz == pytest.approx(f0, rel=0.03)
        # the notes overlap (an eighth apart is 268 ms): the decay is extrapolated from the early decay
        assert event.decay_ms == pytest.approx(decay_ms, rel=0.1)
        assert event.rolloff_db_per_oct <= -15.0


def test_event_times_are_the_note_onsets() -> None:
    sixteenth = 60.0 / 112 / 4
    expected = [step * sixteenth for step in synth.LOG_DRUM_STEPS] + [16 * sixteenth, 19 * sixteenth]
    times = [e.time_s for e in detect(line(70.0, 450.0), SR).events]
    assert times == pytest.approx(expected, abs=0.03)


def test_follows_pitch_glides() -> None:
    result = detect(synth.normalise(synth.log_drum_line(SR, 3.0, 112, np.random.default_rng(1), root_hz=60.0,
                                                        glide_semitones=7.0)), SR)
    assert result.log_drum
    assert all(50 <= e.f0_hz <= 150 for e in result.events)


@pytest.mark.parametrize("name, make", [
    ("kick", lambda rng: synth.pattern(SR, 3.0, 120, (0, 4, 8, 12), lambda: synth.kick(SR, rng))),
    ("808", lambda rng: synth.pattern(SR, 4.0, 90, (0, 8), lambda: synth.bass_808(SR, 50.0, rng))),
    ("sustained bass",
     lambda rng: synth.pattern(SR, 3.0, 112, (0, 8), lambda: synth.sustained_bass(SR, 65.0, 1.0))),
])
def test_rejects_each_look_alike_for_the_right_reason(name: str, make: object) -> None:
    result = detect(synth.normalise(make(np.random.default_rng(2))), SR)  # type: ignore[operator]
    assert not result.log_drum and not result.events
    assert result.candidates, f"{name}: its onsets should be measured, then rejected"
    config = DetectorConfig()
    for c in result.candidates:
        if name == "kick":
            assert c.decay_ms < 200.0
        elif name == "808":
            assert c.decay_ms > 1000.0
        else:
            assert c.decay_ms > config.decay_max_ms or c.rolloff_db_per_oct > config.max_rolloff_db_per_oct


def test_thresholds_come_from_the_config() -> None:
    audio = line(100.0, 450.0)
    assert detect(audio, SR).log_drum
    assert not detect(audio, SR, DetectorConfig(f0_max_hz=90.0)).log_drum
    assert not detect(audio, SR, DetectorConfig(decay_min_ms=500.0, decay_max_ms=900.0)).log_drum
    assert not detect(audio, SR, DetectorConfig(max_rolloff_db_per_oct=-60.0)).log_drum
    assert not detect(audio, SR, DetectorConfig(min_events=9, full_confidence_events=9)).log_drum


def test_confidence_grows_with_the_number_of_events() -> None:
    config = DetectorConfig(min_events=2, full_confidence_events=4)
    seen = []
    for steps, seconds in (((0,), 1.0), ((0, 4), 1.5), ((0, 4, 8), 2.0)):
        notes = synth.normalise(synth.log_drum_line(SR, seconds, 112, np.random.default_rng(3), steps=steps))
        result = detect(notes, SR, config)
        seen.append((len(result.events), result.confidence, result.log_drum))
    # one event is below min_events; confidence is events / full_confidence_events
    assert seen == [(1, 0.25, False), (2, 0.5, True), (3, 0.75, True)]


def test_too_short_audio_is_refused() -> None:
    with pytest.raises(AudioTooShortError, match="at least 0.25 s"):
        detect(np.zeros(100, dtype=np.float32), SR)


def test_validation_suite_passes_and_covers_the_confusions() -> None:
    result = run_validation_suite()
    assert result.passed, result.summary()
    names = " ".join(c.name for c in result.cases)
    for family in ("silence", "white-noise", "pink-noise", "stationary-tone", "decaying-tone", "kick", "808",
                   "sustained-bass", "hihats", "shakers", "piano", "log-drum-glide", "amapiano-mix",
                   "under-white-noise", "under-pink-noise"):
        assert family in names
    assert len(result.cases) >= 50
    assert sum(c.expected for c in result.cases) >= 20
    assert sum(not c.expected for c in result.cases) >= 20


def test_validation_cases_use_several_sample_rates() -> None:
    assert {case.sample_rate for case in validation_cases()} >= {22050, 32000, 44100, 48000}


def test_a_broken_threshold_fails_the_suite() -> None:
    result = run_validation_suite(DetectorConfig(decay_max_ms=2500.0))  # would accept 808s
    assert not result.passed
    assert all(c.name.startswith("808") or "hiphop" in c.name for c in result.failures), result.summary()
