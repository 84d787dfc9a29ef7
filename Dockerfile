# cifarlab on a PyTorch CUDA image. The image holds the tools (DVC, the project's Python
# dependencies, git); the code, params, data, DVC cache and results stay in the checkout,
# which is bind-mounted at /workspace at run time (docs/docker.md):
#
#   docker build -t cifarlab .
#   docker run --gpus all --ipc host --rm -u "$(id -u):$(id -g)" -v "$PWD":/workspace cifarlab dvc repro
#
# BASE_IMAGE: any image with Python, torch and torchvision (torch is not installed again).
ARG BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.9-cudnn9-runtime
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# git: DVC experiments commit to refs in the checkout's .git. The pytorch runtime images lack it.
# hadolint ignore=DL3008
RUN if ! command -v git >/dev/null; then \
        apt-get update \
        && apt-get install -y --no-install-recommends git ca-certificates \
        && rm -rf /var/lib/apt/lists/*; \
    fi

# The project's dependencies from pyproject.toml (runtime + dev, so `pytest` runs in the
# container too), with the base image's torch and torchvision held at their versions.
COPY pyproject.toml /tmp/cifarlab/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/cifarlab/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['dev'] + p['optional-dependencies']['slurm']))" > /tmp/cifarlab/requirements.txt \
    && pip freeze | grep -iE '^(torch|torchvision)==' > /tmp/cifarlab/constraints.txt \
    && pip install --no-cache-dir -r /tmp/cifarlab/requirements.txt -c /tmp/cifarlab/constraints.txt \
    && rm -rf /tmp/cifarlab

# Run as the host user (docker run -u "$(id -u):$(id -g)") so files written into the checkout
# are theirs. That uid has no passwd entry: HOME and every cache must be writable by anyone, and
# USER/LOGNAME name it, since DVC asks getpass.getuser(), which fails on an unknown uid without them.
# git: the checkout belongs to a user git does not know inside the container (safe.directory),
# and `dvc exp run` commits, which needs an identity (system-wide, so any uid gets it).
ENV HOME=/home/cifarlab \
    USER=cifarlab \
    LOGNAME=cifarlab \
    XDG_CACHE_HOME=/home/cifarlab/.cache \
    TORCH_HOME=/home/cifarlab/.cache/torch \
    MPLCONFIGDIR=/home/cifarlab/.cache/matplotlib \
    PYTHONPATH=/workspace/src \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# `cifarlab` runs the mounted checkout's command (python -m cifarlab): the package is not
# installed in the image, its code stays in the checkout.
RUN mkdir -p /home/cifarlab/.cache/torch /home/cifarlab/.cache/matplotlib \
    && chmod -R 1777 /home/cifarlab \
    && printf '#!/bin/sh\nexec python -m cifarlab "$@"\n' > /usr/local/bin/cifarlab \
    && chmod 755 /usr/local/bin/cifarlab \
    && git config --system --add safe.directory '*' \
    && git config --system user.name "cifarlab (docker)" \
    && git config --system user.email "cifarlab@localhost"

# PYTHONPATH above puts the mounted checkout's src/ on the path: the code that runs is always
# the code DVC hashed, never a copy baked into the image.
WORKDIR /workspace
CMD ["dvc", "repro"]
