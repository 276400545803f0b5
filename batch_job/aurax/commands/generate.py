"""`aurax generate`: listen to a checkpoint (or the base model) with the evaluation's own generation code."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  aurax generate --prompt "amapiano groove, log drums, 112 bpm" --seeds 0,1,2 --out clips/
  aurax generate --checkpoint s3://BUCKET/runs/RUN/checkpoints --config run.yaml \\
      --prompts-file prompts.txt --seconds 10 --guidance 3 --out s3://BUCKET/listen/RUN

Clip k is prompt k // (number of seeds) with seed k % (number of seeds). The same prompt, seed, length and
sampling settings as evaluation clip i (seed = evaluation.seed + i) give that clip again. Writes
NNNN-seedS.wav and clips.json (settings, prompts, seeds, AURA-X scores).

exit codes: 0 clips written, 64 bad arguments or config, 65 checkpoint, model or prompts file missing or
unreadable"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "generate", help="generate clips from a checkpoint or the base model into a folder",
        description="Generate clips for given prompts and seeds with the fine-tuned model (--checkpoint) or "
                    "the base model, batched and reproducible per clip, exactly as the evaluation does.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", metavar="URI",
                        help="a run's checkpoints folder ({run-uri}/checkpoints): its newest verified checkpoint "
                             "(needs --config, the run's config)")
    source.add_argument("--model", metavar="ID",
                        help="a base model: Hugging Face id or local folder (default: the config's model.model_id, "
                             "else facebook/musicgen-small)")
    parser.add_argument("--config", metavar="URI", help="run config: model and evaluation settings to default to")
    parser.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    parser.add_argument("--prompts-file", metavar="URI", help="a text file with one prompt per line")
    parser.add_argument("--seeds", default="0", metavar="N,N,...", help="seeds, each used for every prompt "
                        "(default 0)")
    parser.add_argument("--seconds", type=float, metavar="S", help="clip length (default: evaluation.clip_seconds)")
    parser.add_argument("--guidance", type=float, metavar="G",
                        help="classifier-free guidance scale, 1 for none (default: evaluation.guidance_scale)")
    parser.add_argument("--top-k", type=int, metavar="K", help="top-k sampling, 0 for all (default: evaluation.top_k)")
    parser.add_argument("--temperature", type=float, metavar="T", help="default: evaluation.temperature")
    parser.add_argument("--precision", choices=("auto", "fp16", "bf16", "fp32"),
                        help="on a GPU (default: evaluation.precision; the CPU always uses fp32)")
    parser.add_argument("--batch-size", type=int, metavar="N", help="most clips per batch "
                        "(default: evaluation.max_batch_size, fewer if GPU memory is short)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", required=True, metavar="URI", help="output folder (a path or s3:// URI)")
    parser.add_argument("--json", action="store_true", help="print clips.json")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import json

    import torch
    from pydantic import ValidationError

    from aurax_contracts import ContractError, RunConfig, parse_run_config
    from aurax_contracts.config import MUSICGEN_SMALL, EvaluationConfig

    from .. import storage
    from ..audio.config import AnalysisConfig
    from ..evaluate.folder import generate_to_folder
    from ..evaluate.generate import SamplingSettings
    from ..model import load_configured_musicgen, load_musicgen, load_tokenizer

    config = parse_run_config(storage.read_text(args.config), args.config) if args.config else None
    prompts = list(args.prompt)
    if args.prompts_file:
        prompts += [line.strip() for line in storage.read_text(args.prompts_file).splitlines() if line.strip()]
    evaluation = config.evaluation if config else EvaluationConfig()
    problems = []
    if not prompts:
        problems.append("no prompts: give --prompt TEXT (repeatable) or --prompts-file FILE (one per line)")
    if any(not prompt.strip() for prompt in prompts):
        problems.append("--prompt '': a prompt is empty; give the text to generate from (or leave it out)")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        if not seeds or min(seeds) < 0:
            raise ValueError
    except ValueError:
        problems.append(f"--seeds {args.seeds!r}: give non-negative integers separated by commas, e.g. 0,1,2")
        seeds = []
    if args.checkpoint and config is None:
        problems.append("--checkpoint needs --config (the run's config: its model and fine-tuning setup)")
    overrides = {"clip_seconds": args.seconds, "guidance_scale": args.guidance, "top_k": args.top_k,
                 "temperature": args.temperature, "precision": args.precision, "max_batch_size": args.batch_size}
    try:
        evaluation = EvaluationConfig.model_validate(
            {**evaluation.model_dump(), **{k: v for k, v in overrides.items() if v is not None}})
    except ValidationError as exc:
        flags = {"clip_seconds": "--seconds", "guidance_scale": "--guidance", "top_k": "--top-k",
                 "temperature": "--temperature", "max_batch_size": "--batch-size"}
        problems += [f"{flags.get(str(e['loc'][0]), e['loc'][0])} {e['input']}: {e['msg'].lower()}"
                     for e in exc.errors()]
    shortest = AnalysisConfig().detector.min_seconds
    if evaluation.clip_seconds < shortest:
        problems.append(f"--seconds {evaluation.clip_seconds:g}: the AURA-X score needs clips of at least "
                        f"{shortest:g} s; give --seconds {shortest:g} or more")
    if args.device == "cuda" and not torch.cuda.is_available():
        problems.append("--device cuda: torch sees no CUDA device on this machine; use --device cpu (or auto)")
    out = storage.parse_uri(args.out)
    if out.scheme == "file" and Path(out.key).exists() and not Path(out.key).is_dir():
        problems.append(f"--out {args.out}: is a file, not a folder; give a folder to write the clips into")
    if problems:
        raise ContractError("aurax generate arguments", problems)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    if args.checkpoint:
        from ..train.checkpoint import load_trained_model

        assert isinstance(config, RunConfig)
        model, manifest, _ = load_trained_model(args.checkpoint, config)  # InputError (65) when none verifies
        model_id, name = config.model.model_id, f"{args.checkpoint} (step {manifest.step})"
        revision: str | None = config.model.resolved_revision()
    else:
        model_id = name = args.model or (config.model.model_id if config else MUSICGEN_SMALL)
        try:
            if config and model_id == config.model.model_id:
                # As the evaluation loads its control arm: the pinned revision, attention kernel and dropout.
                model, revision = load_configured_musicgen(config.model), config.model.resolved_revision()
            else:  # load_musicgen's default revision (the pinned one for musicgen-small)
                model, revision = load_musicgen(model_id), None
        except OSError as exc:
            raise _unloadable(model_id, exc) from exc
    try:
        tokenizer = load_tokenizer(model_id, revision)
    except OSError as exc:
        raise _unloadable(model_id, exc) from exc
    written, index = generate_to_folder(
        model, tokenizer, prompts, seeds, SamplingSettings.from_config(evaluation), args.out,
        model_name=name, device=device, precision=evaluation.precision, max_batch_size=evaluation.max_batch_size,
        threshold=evaluation.score_threshold)
    if args.json:
        print(index)
    else:
        for clip in written:
            shown = f"score {clip.score:.1f}" if clip.score is not None else "NaN/Inf generation"
            print(f"{clip.file}: {shown}  (seed {clip.seed}) {json.dumps(clip.prompt)}")
    return 0


def _unloadable(model_id: str, exc: OSError) -> Exception:
    """An unknown or unreachable model (transformers raises OSError): bad input, with what to give instead."""
    from ..errors import InputError

    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(f"cannot load the model {model_id!r} ({reason}); give a Hugging Face model id this machine "
                      "can download or has cached, a local folder holding a saved MusicGen (config.json and "
                      "weights), or --checkpoint")
