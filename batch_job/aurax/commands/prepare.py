"""`aurax job prepare`: build the MagnaTagATune proxy-tag training set with precomputed EnCodec codes."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

from aurax_contracts import JobExit, parse_run_config

GROUP = "job"
log = logging.getLogger(__name__)

#: Where downloads and partial files are kept between runs on one machine (set it to a large volume).
WORK_DIR_ENV = "AURAX_WORK_DIR"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "prepare", help="build the training set (MagnaTagATune subset + EnCodec codes) and its manifest",
        description="Select MagnaTagATune clips by proxy tags, encode them with the model's EnCodec and write "
                    "shards, a selection report and, last, manifest.json under --dataset-uri. A complete "
                    "dataset for the same config is left untouched.",
        epilog="example:\n  aurax job prepare --config s3://BUCKET/runs/RUN/config.json "
               "--dataset-uri s3://BUCKET/datasets/FINGERPRINT\n\n"
               "exit codes: 0 dataset complete; 64 bad config or unknown tag in the rules; 65 bad input (malformed "
               "annotations, missing or short download, too few clips selected); 75 download interrupted by "
               "network errors (run it again: it resumes)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="RunConfig JSON/YAML: s3://, file:// or a path")
    parser.add_argument("--dataset-uri", required=True, help="dataset root to write (s3://... or a folder)")
    parser.add_argument("--source", default=None,
                        help="MTAT location overriding config dataset.source_uri: the web site, an s3:// prefix or "
                             "a folder with annotations_final.csv and mp3.zip.00{1,2,3} or folders 0-9, a-f")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help=f"local folder for downloads (default ${WORK_DIR_ENV} or the system temp folder)")
    parser.add_argument("--device", default=None, help="torch device for EnCodec (default: cuda if present)")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per EnCodec batch (default 8 GPU, 4 CPU)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .. import storage
    from ..dataset.builder import PrepareOptions, prepare_dataset
    from ..dataset.download import DownloadError

    config = parse_run_config(storage.read_text(args.config), args.config)
    work_dir = args.work_dir or Path(os.environ.get(WORK_DIR_ENV) or Path(tempfile.gettempdir()) / "aurax-prepare")
    options = PrepareOptions(device=args.device, batch_size=args.batch_size)

    try:
        manifest = prepare_dataset(config, args.dataset_uri, work_dir, args.source, options)
    except DownloadError as exc:
        print(f"aurax: {exc}", file=sys.stderr)
        # A network failure is worth retrying (Batch retries INTERRUPTED and the download resumes);
        # a wrong size or a missing file is not.
        return JobExit.INTERRUPTED if exc.transient else JobExit.BAD_INPUT
    log.info("dataset ready at %s: %s clips (%.1f h), skipped %s", args.dataset_uri, manifest.counts,
             manifest.total_seconds / 3600, manifest.skipped)
    return JobExit.SUCCEEDED
