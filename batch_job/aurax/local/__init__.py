"""`aurax local`: the whole pipeline on one machine, in an embedded AWS emulation (moto).

- `moto_patches`: the narrow patches that make moto run this pipeline (documented one by one there).
- `iam`: every AWS request authorised as the principal that makes it, against the template's policies.
- `image`: the job image's ENTRYPOINT and CMD from the Dockerfile, and the argv ECS runs for a job.
- `endpoint`: an HTTP endpoint into the in-process emulation, for the job subprocesses.
- `batch_runner`: runs each Batch job attempt as a real `aurax job ...` subprocess.
- `stack`: deploys `template.yaml` into the emulation.
- `pipeline`: one local run, end to end, with progress.
"""
