"""`aurax score FILE...`: the AURA-X cultural score of each file."""

from __future__ import annotations

import argparse

from .detect import add_audio_file_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score", help="AURA-X cultural score (0-100) of audio files",
        description="Per file: the AURA-X score, whether it counts as authentic (score >= the threshold, "
                    "default 80) and its components (log drums, tempo, shakers, low end, keys; "
                    "docs/scoring.md).",
        epilog="exit codes: 0 every file scored, 65 a file was unreadable, empty or too short (the others "
               "are still reported), 64 bad thresholds file")
    add_audio_file_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..audio.config import load_analysis_config
    from ..audio.files import analyse_files
    from ..audio.scorer import ScoreResult, score

    config = load_analysis_config(args.config)

    def describe(result: ScoreResult, path: str) -> str:
        verdict = "authentic" if result.authentic else "not authentic"
        tempo = f"{result.tempo_bpm:.1f} BPM" if result.tempo_bpm is not None else "no pulse"
        parts = ", ".join(f"{name} {value:.2f}" for name, value in result.components.items())
        return f"{path}: {result.score:.1f}/100 {verdict} (tempo {tempo}; {parts})"

    return analyse_files(args.files, lambda audio: score(audio.samples, audio.sample_rate, config),
                         lambda result, path: result.to_json(path), describe, args.json)
