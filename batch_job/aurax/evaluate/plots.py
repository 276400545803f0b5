"""The report's figures as PNG bytes (matplotlib's object API: no global state, no display needed)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from ..audio.detector import LogDrumEvent
from ..audio.spectral import power_db, resample, stft_power

ARM_COLOURS = {"treatment": "#d95f02", "control": "#1b9e77"}
SPECTROGRAM_SR = 8000
SPECTROGRAM_WINDOW = 1024
SPECTROGRAM_HOP = 128


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def score_distributions(scores: dict[str, list[float]], threshold: float) -> bytes:
    figure = Figure(figsize=(7, 3.5))
    axes = figure.subplots()
    bins = np.linspace(0, 100, 21)
    for arm, values in scores.items():
        axes.hist(values, bins=bins, alpha=0.6, label=f"{arm} (n={len(values)})", color=ARM_COLOURS.get(arm))
    axes.axvline(threshold, color="black", linestyle="--", label=f"authentic >= {threshold:g}")
    axes.set(xlabel="AURA-X score", ylabel="clips", title="Score distribution, treatment vs control")
    axes.legend()
    return _png(figure)


def component_breakdown(means: dict[str, dict[str, float]]) -> bytes:
    """Mean of each component (0..1) per arm."""
    figure = Figure(figsize=(7, 3.5))
    axes = figure.subplots()
    arms = list(means)
    names = list(next(iter(means.values()))) if means else []
    positions = np.arange(len(names))
    width = 0.8 / max(1, len(arms))
    for i, arm in enumerate(arms):
        axes.bar(positions + i * width, [means[arm][n] for n in names], width, label=arm,
                 color=ARM_COLOURS.get(arm))
    axes.set_xticks(positions + width * (len(arms) - 1) / 2, names)
    axes.set(ylim=(0, 1), ylabel="mean component (0..1)", title="Score components")
    axes.legend()
    return _png(figure)


@dataclass(frozen=True)
class LabelledClip:
    title: str
    samples: np.ndarray
    sample_rate: int
    events: list[LogDrumEvent]


def spectrogram(clip: LabelledClip) -> bytes:
    """0-4 kHz spectrogram on a log frequency axis; each detected log drum is marked at its onset and f0."""
    audio = resample(clip.samples, clip.sample_rate, SPECTROGRAM_SR)
    power = stft_power(audio, SPECTROGRAM_WINDOW, SPECTROGRAM_HOP)
    db = power_db(power)
    db = np.maximum(db, db.max() - 80.0)
    times = np.arange(power.shape[0]) * SPECTROGRAM_HOP / SPECTROGRAM_SR
    freqs = np.fft.rfftfreq(SPECTROGRAM_WINDOW, 1.0 / SPECTROGRAM_SR)
    keep = freqs >= 25.0
    figure = Figure(figsize=(8, 3.5))
    axes = figure.subplots()
    mesh = axes.pcolormesh(times, freqs[keep], db[:, keep].T, shading="auto", cmap="magma")
    axes.set_yscale("log")
    for event in clip.events:
        axes.axvline(event.time_s, color="cyan", linewidth=0.8, alpha=0.7)
        axes.plot(event.time_s, event.f0_hz, "o", color="cyan", markersize=5)
    axes.set(xlabel="time (s)", ylabel="frequency (Hz)",
             title=f"{clip.title}: {len(clip.events)} log-drum event(s) marked")
    figure.colorbar(mesh, ax=axes, label="dB")
    return _png(figure)


def loss_curves(train: list[tuple[int, float]], validation: list[tuple[int, float]]) -> bytes:
    figure = Figure(figsize=(7, 3.5))
    axes = figure.subplots()
    if train:
        axes.plot(*zip(*train, strict=True), label="training loss", linewidth=1)
    if validation:
        axes.plot(*zip(*validation, strict=True), "o-", label="validation loss")
    axes.set(xlabel="optimizer step", ylabel="loss", title="Loss curves")
    axes.legend()
    return _png(figure)
