"""Benchmark of the log-drum detector and the AURA-X scorer: speed (times real time, one core) and accuracy
(precision, recall, F1; for the scorer, of its authentic verdict) on labelled synthetic sets drawn with other
seeds and parameters than the tests and the preflight validation suite (random pitches, decays, tempi,
patterns, gains and noise levels).

    .venv/bin/python bench/bench_detector.py [--clips 200] [--seed 2026]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from aurax.audio import synth
from aurax.audio.detector import detect
from aurax.audio.scorer import score

SR = 32000  # MusicGen's output rate: what the evaluation feeds the detector


def _pin_to_one_core() -> str:
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        return "pinned to one core"
    except (AttributeError, OSError):
        return "not pinned (no sched_setaffinity)"


def speed(analyse: Callable[[np.ndarray, int], object], audio: np.ndarray,
          repeats: int) -> tuple[float, float]:
    """Times real time over `repeats` runs after one warm-up: (by wall clock, by this process's CPU time).

    Single-threaded code pinned to one core: on an idle machine the two agree; on a shared one the CPU time is
    the one-core figure and the wall clock includes waiting for the core."""
    analyse(audio, SR)
    seconds = audio.size / SR
    wall = []
    cpu = []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        analyse(audio, SR)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return seconds / statistics.median(wall), seconds / statistics.median(cpu)


def _random_steps(rng: np.random.Generator) -> tuple[int, ...]:
    count = int(rng.integers(3, 7))
    return tuple(sorted(rng.choice(16, size=count, replace=False).tolist()))


def positive(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A log-drum line, alone or in a mix, possibly gliding, possibly under noise."""
    bpm = float(rng.uniform(104, 120))
    root = float(rng.uniform(52, 100))
    degrees = tuple(int(d) for d in rng.choice([0, 2, 3, 5, 7], size=6))
    top = root * 2 ** (max(degrees) / 12)
    if top > 145:
        degrees = (0,) * 6
    line = synth.log_drum_line(SR, seconds, bpm, rng, root_hz=root, decay_ms=float(rng.uniform(300, 600)),
                               glide_semitones=float(rng.choice([0, 0, -5, -3, 3, 5, 7])),
                               steps=_random_steps(rng), degrees=degrees)
    mix = line.copy()
    if rng.random() < 0.5:
        mix += synth.pattern(SR, seconds, bpm, (0, 8), lambda: synth.kick(SR, rng),
                             gain=float(rng.uniform(0.3, 0.7)))
        mix += synth.pattern(SR, seconds, bpm, tuple(range(16)), lambda: synth.shaker(SR, rng),
                             gain=float(rng.uniform(0.05, 0.2)), swing=float(rng.uniform(0, 0.2)))
        mix += float(rng.uniform(0.2, 0.5)) * synth.chord_track(SR, seconds, bpm, rng, every_beats=2)
    mix = synth.normalise(mix)
    if rng.random() < 0.3:
        mix = synth.add_noise(mix, float(rng.uniform(6, 20)), rng, str(rng.choice(["white", "pink"])))
    return mix


def negative(rng: np.random.Generator, seconds: float) -> np.ndarray:
    bpm = float(rng.uniform(80, 135))
    kind = int(rng.integers(0, 10))
    if kind == 0:
        return synth.normalise(synth.pattern(SR, seconds, bpm, (0, 4, 8, 12), lambda: synth.kick(
            SR, rng, f_start=float(rng.uniform(120, 250)), f_end=float(rng.uniform(40, 65)),
            sweep_ms=float(rng.uniform(20, 70)), decay_ms=float(rng.uniform(90, 200)),
            click=float(rng.uniform(0, 1)))))
    if kind == 1:
        f0 = float(rng.uniform(38, 75))
        return synth.normalise(synth.pattern(SR, seconds, bpm, _random_steps(rng)[:2], lambda: synth.bass_808(
            SR, f0, rng, decay_ms=float(rng.uniform(1100, 2600)))))
    if kind == 2:
        return synth.normalise(synth.pattern(SR, seconds, bpm, (0, 8), lambda: synth.sustained_bass(
            SR, float(rng.uniform(45, 130)), float(rng.uniform(0.6, 1.2)))))
    if kind == 3:
        return synth.tone(SR, float(rng.uniform(35, 160)), seconds)
    if kind == 4:
        freq = float(rng.choice([rng.uniform(25, 45), rng.uniform(170, 500)]))
        return synth.normalise(synth.pattern(SR, seconds, bpm, _random_steps(rng), lambda: synth.tone(
            SR, freq, 1.0, decay_ms=float(rng.uniform(300, 600)))))
    if kind == 5:
        noise = synth.white_noise if rng.random() < 0.5 else synth.pink_noise
        return noise(SR, seconds, rng)
    if kind == 6:
        steps = tuple(range(0, 16, int(rng.choice([1, 2]))))
        return synth.normalise(synth.pattern(SR, seconds, bpm, steps, lambda: synth.hihat(
            SR, rng, decay_ms=float(rng.uniform(25, 80)))))
    if kind == 7:
        return synth.normalise(synth.chord_track(SR, seconds, bpm, rng, every_beats=int(rng.integers(1, 3))))
    if kind == 8:
        return synth.house_groove(SR, seconds, rng, bpm=float(rng.uniform(120, 128)))
    return synth.hiphop_groove(SR, seconds, rng, bpm=float(rng.uniform(80, 95))) if rng.random() < 0.5 \
        else synth.rock_groove(SR, seconds, rng, bpm=float(rng.uniform(110, 150)))


def labelled_accuracy(clips: int, rng: np.random.Generator, seconds: float,
                      make_positive: Callable[[np.random.Generator, float], np.ndarray],
                      make_negative: Callable[[np.random.Generator, float], np.ndarray],
                      verdict: Callable[[np.ndarray], bool]) -> dict[str, float]:
    """Precision/recall/F1 of `verdict` on alternating positive and negative clips."""
    verdicts = []
    for i in range(clips):
        truth = i % 2 == 0
        audio = make_positive(rng, seconds) if truth else make_negative(rng, seconds)
        verdicts.append((truth, verdict(audio)))
    return _f1(verdicts)


def accuracy(clips: int, seed: int, seconds: float) -> dict[str, float]:
    return labelled_accuracy(clips, np.random.default_rng(seed), seconds, positive, negative,
                             lambda audio: detect(audio, SR).log_drum)


def groove_positive(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A full Amapiano-style mix: what the scorer must call authentic."""
    return synth.amapiano_groove(SR, seconds, rng, bpm=float(rng.uniform(108, 118)),
                                 root_hz=float(rng.uniform(52, 80)), decay_ms=float(rng.uniform(320, 580)),
                                 glide_semitones=float(rng.choice([0, 0, -3, 3, 5])))


def groove_negative(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Other genres and look-alike parts: what it must not."""
    kind = int(rng.integers(0, 6))
    if kind == 0:
        return synth.house_groove(SR, seconds, rng, bpm=float(rng.uniform(120, 128)))
    if kind == 1:
        return synth.hiphop_groove(SR, seconds, rng, bpm=float(rng.uniform(80, 95)))
    if kind == 2:
        return synth.rock_groove(SR, seconds, rng, bpm=float(rng.uniform(110, 150)))
    if kind == 3:
        return synth.ambient_pads(SR, seconds, rng)
    if kind == 4:  # a log-drum line at the right tempo without the rest of the groove
        return synth.normalise(synth.log_drum_line(SR, seconds, float(rng.uniform(108, 118)), rng,
                                                   root_hz=float(rng.uniform(52, 80))))
    return negative(rng, seconds)


def _f1(verdicts: list[tuple[bool, bool]]) -> dict[str, float]:
    """(truth, found) pairs -> counts, precision, recall and F1."""
    tp = sum(t and f for t, f in verdicts)
    fp = sum(f and not t for t, f in verdicts)
    fn = sum(t and not f for t, f in verdicts)
    tn = len(verdicts) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"clips": len(verdicts), "tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision,
            "recall": recall, "f1": f1}


def scorer_accuracy(clips: int, seed: int, seconds: float) -> dict[str, float]:
    return labelled_accuracy(clips, np.random.default_rng(seed + 1), seconds, groove_positive, groove_negative,
                             lambda audio: score(audio, SR).authentic)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="labelled clips (half with log drums)")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each labelled clip")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"bench_detector: {_pin_to_one_core()}, audio at {SR} Hz")
    print(f"load average before: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for seconds in (10.0, 30.0):
        audio = synth.amapiano_groove(SR, seconds, np.random.default_rng(args.seed))
        for name, analyse, repeats in (("detector", detect, args.repeats),
                                       ("scorer (includes the detector)", score, max(3, args.repeats // 4))):
            wall, cpu = speed(analyse, audio, repeats)
            print(f"{name}, {seconds:.0f} s clip: {cpu:,.0f}x real time by CPU time, {wall:,.0f}x by wall "
                  f"clock (medians of {repeats})")
    start = time.perf_counter()
    result = accuracy(args.clips, args.seed, args.seconds)
    print(f"accuracy on {result['clips']} labelled synthetic clips of {args.seconds:g} s (seed {args.seed}): "
          f"precision {result['precision']:.3f}, recall {result['recall']:.3f}, F1 {result['f1']:.3f} "
          f"(tp {result['tp']}, fp {result['fp']}, fn {result['fn']}, tn {result['tn']}); "
          f"{time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    clips = max(2, args.clips // 4)
    result = scorer_accuracy(clips, args.seed, 8.0)
    print(f"scorer 'authentic' verdict on {clips} clips of 8 s (Amapiano-style mixes vs other genres and a bare "
          f"log-drum line; seed {args.seed + 1}): precision {result['precision']:.3f}, recall "
          f"{result['recall']:.3f}, F1 {result['f1']:.3f} (tp {result['tp']}, fp {result['fp']}, fn {result['fn']}, "
          f"tn {result['tn']}); {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
