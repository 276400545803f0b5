# The AWS Batch job image: `aurax job prepare|train|evaluate` on a GPU instance (g4dn: T4, CUDA 12).
#
#   docker build --platform linux/amd64 --build-arg AURAX_CODE_VERSION=$(git rev-parse --short=12 HEAD) -t aurax-job .
#   docker run --gpus all aurax-job job train --config s3://... --run-uri s3://... --dataset-uri s3://... --until-epoch 5
#
# g4dn instances are x86_64: an image built for arm64 (the default on an Apple-silicon laptop) cannot start
# there, hence `--platform linux/amd64`.
#
# torch's CUDA wheels bundle the CUDA runtime, cuDNN and NCCL, so a slim Python base is enough: the host
# (the ECS GPU AMI) provides only the driver. The T4 is sm_75, which the cu126 wheels include.
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu126
ARG AURAX_CODE_VERSION=unknown

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/opt/hf \
    AURAX_CODE_VERSION=${AURAX_CODE_VERSION}

# ffmpeg/libsndfile for decoding MagnaTagATune mp3s in `aurax job prepare`.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libsndfile1 ffmpeg \
    && rm -rf /var/lib/apt/lists/*

# The CUDA build of torch first, from PyTorch's index; the package's `job` extra then finds it satisfied.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /opt/aurax
COPY pyproject.toml README.md ./
COPY layers/aurax ./layers/aurax
COPY batch_job ./batch_job
RUN pip install ".[job]" && python -c "import torch, aurax.cli; assert torch.version.cuda, 'CPU torch installed'"

# The pretrained model inside the image: every spot attempt would otherwise download ~2.4 GB from the hub.
ARG BAKED_MODEL_ID=facebook/musicgen-small
# The commit runs load (aurax_contracts.config.MUSICGEN_SMALL_REVISION; a test keeps the two equal).
ARG BAKED_MODEL_REVISION=4c8334b02c6ec4e8664a91979669a501ec497792
RUN python -c "from huggingface_hub import snapshot_download; snapshot_download('${BAKED_MODEL_ID}', revision='${BAKED_MODEL_REVISION}')"

# From here on nothing in the image calls the hub: `from_pretrained` reads the snapshot baked into HF_HOME above
# and never asks the hub first (a hub outage or a subnet without internet cannot stall a spot attempt), and a
# model that was not baked fails at once with transformers' offline error instead of downloading gigabytes.
ENV HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1

# Scratch for the dataset cache and checkpoint staging (a 4.7 GB full fine-tune checkpoint is staged here
# before its upload): mount the instance's NVMe or give the job a large enough volume.
RUN useradd --create-home --uid 1000 aurax && mkdir -p /scratch "${HF_HOME}" && chown -R aurax /scratch "${HF_HOME}"
USER aurax
ENV TMPDIR=/scratch

# Batch sends SIGTERM to PID 1: `aurax` itself (exec form), which checkpoints and exits 75. A job definition's
# Command is Docker's CMD and is appended to this ENTRYPOINT, so it names the subcommand only (`job train ...`,
# not `aurax job train ...`); `aurax local` starts every job with the argv composed this way.
ENTRYPOINT ["aurax"]
CMD ["--help"]
