"""Thresholds of the log-drum detector and the AURA-X score, with documented defaults (docs/scoring.md).

Given to `aurax detect`, `aurax score`, `aurax preflight --analysis-config` and `aurax job evaluate
--analysis-config` as a YAML/JSON document `{detector: {...}, score: {...}}`; every field is optional.
"""

from __future__ import annotations

from typing import Annotated

import yaml
from pydantic import Field, ValidationError, model_validator

from aurax_contracts import ContractError, describe_validation_error
from aurax_contracts.base import Contract

Positive = Annotated[float, Field(gt=0)]
Weight = Annotated[float, Field(ge=0, le=100)]
Decibels = Annotated[float, Field(ge=-60, le=60)]


class DetectorConfig(Contract):
    """When a low-band onset counts as a log-drum event, and when a clip has log drums."""

    f0_min_hz: Annotated[float, Field(gt=0, le=1000)] = 50.0
    """Lowest fundamental of a log drum (the issue's 50-150 Hz)."""
    f0_max_hz: Annotated[float, Field(gt=0, le=1000)] = 150.0
    decay_min_ms: Annotated[float, Field(gt=0, le=10_000)] = 250.0
    """Shortest -30 dB decay: the criteria's 300 ms less a measurement margin; kicks decay in < 200 ms."""
    decay_max_ms: Annotated[float, Field(gt=0, le=10_000)] = 800.0
    """Longest -30 dB decay: the 600 ms of the criteria plus a margin; 808s ring for over a second."""
    max_rolloff_db_per_oct: Annotated[float, Field(ge=-120, le=0)] = -12.0
    """Each of harmonics 2-4 must lie below the fundamental by at least this many dB per octave (a
    sawtooth bass falls 6 dB/oct, noise 0-3 dB/oct, a log drum's body 20 dB/oct or more)."""
    min_onset_rise_db: Annotated[float, Field(gt=0, le=60)] = 6.0
    """A low-band onset must raise the 30-400 Hz level by this much within 50 ms."""
    event_range_db: Annotated[float, Field(gt=0, le=120)] = 40.0
    """Onsets quieter than the loudest low-band moment by more than this are ignored (background)."""
    silence_dbfs: Annotated[float, Field(le=0)] = -70.0
    """Onsets below this absolute level (dB full scale) are ignored."""
    min_events: Annotated[int, Field(ge=1, le=1000)] = 2
    """A clip has log drums when at least this many events pass all three criteria."""
    full_confidence_events: Annotated[int, Field(ge=1, le=1000)] = 4
    """Events for confidence 1.0 (confidence = events / this, capped at 1)."""
    min_seconds: Annotated[float, Field(gt=0, le=60)] = 0.25
    """Shorter audio is rejected as too short to judge."""

    @model_validator(mode="after")
    def _ordered(self) -> DetectorConfig:
        if self.f0_min_hz >= self.f0_max_hz:
            raise ValueError("f0_min_hz must be below f0_max_hz")
        if self.decay_min_ms >= self.decay_max_ms:
            raise ValueError("decay_min_ms must be below decay_max_ms")
        if self.full_confidence_events < self.min_events:
            raise ValueError("full_confidence_events must be at least min_events")
        return self


class ScoreWeights(Contract):
    """Relative weights of the components (normalised to sum 1)."""

    log_drum: Weight = 35.0
    tempo: Weight = 20.0
    shakers: Weight = 15.0
    low_end: Weight = 15.0
    keys: Weight = 15.0

    @model_validator(mode="after")
    def _some_weight(self) -> ScoreWeights:
        if sum(self.model_dump().values()) <= 0:
            raise ValueError("at least one weight must be positive")
        return self


class ScoreConfig(Contract):
    weights: ScoreWeights = Field(default_factory=ScoreWeights)
    tempo_min_bpm: Annotated[float, Field(gt=20, le=300)] = 108.0
    tempo_max_bpm: Annotated[float, Field(gt=20, le=300)] = 118.0
    tempo_falloff_bpm: Positive = 6.0
    """The tempo component falls linearly from 1 at the range's edge to 0 this many BPM outside it."""
    tempo_min_clarity: Annotated[float, Field(gt=0, le=100)] = 6.0
    """A tempo is read only when the autocorrelation's peak salience stands this many noise-floor units above
    zero, the noise floor being what pulse-less audio gives (its standard deviation, sqrt(1.5 / frames));
    below it the clip has no pulse: no tempo, no tempo or shaker credit (docs/scoring.md)."""
    tempo_min_pulse_db: Annotated[float, Field(ge=0, le=60)] = 0.3
    """A pulse is made of onsets: the onset envelope's periodic part at that tempo (the root of its weighted
    mean autocovariance at the tempo's lags, in dB of mean rise per frequency bin) must reach this. Steady
    tones whose partials beat give a periodic envelope too, but under 0.2 dB; grooves give 1.5-3 dB."""
    log_drum_rate_hz: Positive = 1.0
    """Log-drum events per second for a full log-drum component (a bassline of ~2 notes per beat at 112 BPM
    gives ~2/s; one per beat still scores ~1)."""
    shaker_band_hz: tuple[Positive, Positive] = (5000.0, 8000.0)
    """Band of the shaker/hi-hat envelope (below 8 kHz so 16 kHz material still counts)."""
    shaker_min_regularity: Annotated[float, Field(ge=0, lt=1)] = 0.15
    shaker_full_regularity: Annotated[float, Field(gt=0, le=1)] = 0.45
    """Autocorrelation of the shaker envelope at the 16th lag, mapped linearly from min (0) to full (1)."""
    low_end_balance_db: tuple[Decibels, Decibels] = (6.0, 20.0)
    """Energy below 250 Hz over the energy above it, in dB, that scores 1: bass-led but not bass only."""
    low_end_falloff_db: Positive = 6.0
    """The low-end component falls linearly to 0 this many dB outside that range."""
    keys_band_hz: tuple[Positive, Positive] = (200.0, 2000.0)
    keys_full_fraction: Annotated[float, Field(gt=0, le=1)] = 0.5
    """Share of sounding frames with a chord (3+ pitch classes as clear spectral peaks) for full marks."""
    authentic_threshold: Annotated[float, Field(ge=0, le=100)] = 80.0
    """`aurax score` calls a clip authentic at this score (the evaluation uses the run config's threshold)."""

    @model_validator(mode="after")
    def _ranges(self) -> ScoreConfig:
        for name in ("shaker_band_hz", "keys_band_hz", "low_end_balance_db"):
            low, high = getattr(self, name)
            if low >= high:
                raise ValueError(f"{name}: the first value must be below the second")
        if self.tempo_min_bpm >= self.tempo_max_bpm:
            raise ValueError("tempo_min_bpm must be below tempo_max_bpm")
        if self.shaker_min_regularity >= self.shaker_full_regularity:
            raise ValueError("shaker_min_regularity must be below shaker_full_regularity")
        return self


class AnalysisConfig(Contract):
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)


def parse_analysis_config(text: str, source: str = "analysis config") -> AnalysisConfig:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        problem = f"not valid YAML/JSON: {exc}; fix: check indentation and quoting"
        raise ContractError(source, [problem]) from exc
    if not isinstance(data, dict):
        raise ContractError(source, ["expected a mapping with `detector:` and/or `score:`, got "
                                     f"{type(data).__name__}; fix: see docs/scoring.md"])
    try:
        return AnalysisConfig.model_validate(data)
    except ValidationError as exc:
        raise describe_validation_error(source, exc, AnalysisConfig) from exc


def load_analysis_config(uri: str | None) -> AnalysisConfig:
    """The config at `uri` (s3://, file:// or a path), or the documented defaults when None."""
    if uri is None:
        return AnalysisConfig()
    from .. import storage

    return parse_analysis_config(storage.read_text(uri), uri)
