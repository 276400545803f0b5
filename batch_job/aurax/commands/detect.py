"""`aurax detect FILE...`: does each file have Amapiano log drums, and where."""

from __future__ import annotations

import argparse

ANALYSIS_CONFIG_HELP = ("thresholds file (YAML/JSON `{detector: ..., score: ...}`, a path or s3:// URI); "
                        "default: the documented defaults (docs/scoring.md)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detect", help="detect Amapiano log drums in audio files",
        description="Per file: whether it has log drums, a confidence, and each log-drum event (onset "
                    "time, fundamental, -30 dB decay, roll-off). Any sample rate; mono or stereo; wav, flac, "
                    "mp3, ogg. See docs/scoring.md.",
        epilog="exit codes: 0 every file analysed, 65 a file was unreadable, empty or too short (the others "
               "are still reported), 64 bad thresholds file")
    add_audio_file_arguments(parser)
    parser.set_defaults(handler=run)


def add_audio_file_arguments(parser: argparse.ArgumentParser) -> None:
    """FILE..., --json and --config: what `detect` and `score` both take."""
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (paths, file:// or s3:// URIs)")
    parser.add_argument("--json", action="store_true", help="one JSON object per file, one per line")
    parser.add_argument("--config", metavar="URI", help=ANALYSIS_CONFIG_HELP)


def run(args: argparse.Namespace) -> int:
    from ..audio.config import load_analysis_config
    from ..audio.detector import Detection, detect
    from ..audio.files import analyse_files

    config = load_analysis_config(args.config).detector

    def describe(result: Detection, path: str) -> str:
        verdict = "log drums" if result.log_drum else "no log drums"
        lines = [f"{path}: {verdict} (confidence {result.confidence:.2f}, {len(result.events)} events in "
                 f"{result.duration_s:.1f} s)"]
        lines += [f"  {e.time_s:7.2f} s  f0 {e.f0_hz:6.1f} Hz  decay {e.decay_ms:6.0f} ms  "
                  f"roll-off {e.rolloff_db_per_oct:6.1f} dB/oct" for e in result.events]
        return "\n".join(lines)

    return analyse_files(args.files, lambda audio: detect(audio.samples, audio.sample_rate, config),
                         lambda result, path: result.to_json(path), describe, args.json)
