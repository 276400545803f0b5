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
               "exit codes: 0 dataset complete; 64 bad config, an unknown tag in the rules, or rules the "
               "annotations cannot meet (checked before any audio is downloaded; the fix is printed); 65 bad input "
               "(malformed annotations, a missing or short download, too few usable clips); 75 interrupted by "
               "SIGTERM, a spot notice or network errors (run it again: it resumes, keeping the shards written)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="RunConfig JSON/YAML: s3://, file:// or a path")
    parser.add_argument("--dataset-uri", required=True, help="dataset root to write (s3://... or a folder)")
    parser.add_argument("--source", default=None,
                        help="MTAT location overriding config dataset.source_uri: the web site, an s3:// prefix or "
                             "a folder with annotations_final.csv and mp3.zip.00{1,2,3} or folders 0-9, a-f")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help=f"local folder for downloads (default ${WORK_DIR_ENV} or the system temp folder)")
    parser.add_argument("--device", default=None, help="torch device for EnCodec (default: cuda if present)")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="clips per EnCodec batch (default 8 GPU, 4 CPU)")
    parser.add_argument("--shard-clips", type=_positive_int, default=None,
                        help="clips per shard (default 256, about 3 MB); an interrupted job loses at most the clips "
                             "not yet in a shard when it is killed without notice")
    parser.set_defaults(handler=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def run(args: argparse.Namespace) -> int:
    """Build the dataset. As PID 1 in its container the job is stopped by SIGTERM (ECS) or a spot notice: it
    then writes the clips encoded so far, keeps its progress and exits 75 within seconds, and the retry
    resumes."""
    from .. import storage
    from ..dataset.builder import SHARD_CLIPS, PrepareOptions, prepare_dataset
    from ..dataset.download import DownloadError
    from ..dataset.stopping import Interrupted
    from ..interrupts import ImdsClient, InterruptWatch, read_placement, spot_notice_source

    config = parse_run_config(storage.read_text(args.config), args.config)
    work_dir = args.work_dir or Path(os.environ.get(WORK_DIR_ENV) or Path(tempfile.gettempdir()) / "aurax-prepare")
    imds = ImdsClient.from_env()
    watch = InterruptWatch(spot_notice_source(imds, read_placement(imds)), stop_request_uri=None)
    options = PrepareOptions(device=args.device, batch_size=args.batch_size,
                             shard_clips=args.shard_clips or SHARD_CLIPS, stop=lambda: watch.pending() is not None)
    watch.start()
    try:
        manifest = prepare_dataset(config, args.dataset_uri, work_dir, args.source, options)
    except Interrupted as exc:
        cause = watch.pending()
        print(f"aurax: interrupted ({cause.record_cause if cause else 'stop'}): {exc}; run the same command again "
              "to resume", file=sys.stderr)
        return JobExit.INTERRUPTED
    except DownloadError as exc:
        print(f"aurax: {exc}", file=sys.stderr)
        # A network failure is worth retrying (Batch retries INTERRUPTED and the download resumes);
        # a wrong size or a missing file is not.
        return JobExit.INTERRUPTED if exc.transient else JobExit.BAD_INPUT
    finally:
        watch.stop()
    log.info("dataset ready at %s: %s clips (%.1f h), skipped %s", args.dataset_uri, manifest.counts,
             manifest.total_seconds / 3600, manifest.skipped)
    return JobExit.SUCCEEDED
