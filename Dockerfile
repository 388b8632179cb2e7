# syntax=docker/dockerfile:1.7
#
# mnist-serving images. Targets (docker build --target <name> .):
#
#   serve   (default)  onnxruntime + FastAPI only, no TensorFlow; models mounted at run time:
#                        docker build -t mnist-serving .
#                        docker run -p 8000:8000 -v "$PWD/models:/models:ro" mnist-serving
#   baked              serve + a registry copied in at build time (one self-contained image):
#                        docker build --target baked --build-context models=./models -t mnist-serving:baked .
#                      (the `models` stage below is replaced by the named context, so the main
#                      context can keep ignoring models/; without it the image has an empty registry)
#   gpu                onnxruntime-gpu on a CUDA runtime base, MNIST_DEVICE=cuda:
#                        docker build --target gpu -t mnist-serving:gpu .
#                        docker run --gpus all -p 8000:8000 -v "$PWD/models:/models:ro" mnist-serving:gpu
#   train              TensorFlow + the training CLI; writes a new version into the mounted registry:
#                        docker build --target train -t mnist-serving:train .
#                        docker run -v "$PWD/models:/models" mnist-serving:train --registry /models
#
# Every pip install goes through constraints.txt so images get the versions CI tested.

# Debian's slim image with Debian's Python 3.11, rather than python:*-slim (a Python compiled into
# /usr/local): Debian publishes bookworm-slim as a debootstrap minbase with docs and locales
# trimmed, so the stand-in base that `make image-test` builds here without a registry
# (tests/images/standin.py) is the same rootfs, and every apt-get and pip step below runs unchanged
# both here and under `docker build`. The interpreter then comes from Debian's security updates.
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
ARG CUDA_IMAGE=docker.io/nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04
# The GPU wheel is not in constraints.txt (CI has no GPU). 1.31.1 is built against CUDA 13 and
# was seen serving through CUDAExecutionProvider on an H200 (driver 580): see docs/operations.md, "GPU".
ARG ONNXRUNTIME_GPU_VERSION=1.31.1
ARG APP_UID=10001

# ---- shared base: Debian's python3 (interpreter only), no .pyc, logs straight to stdout, the non-root
# user and the registry mount point (every image runs as that user; the build stages run as root) ---------
FROM ${DEBIAN_IMAGE} AS python-base
ARG APP_UID
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The base tag follows bookworm's point releases, and with them the versions apt resolves; pinning
# them on top breaks the build at each Debian security update, so DL3008 is ignored here.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid "${APP_UID}" --user-group --create-home --shell /usr/sbin/nologin app \
    && mkdir -p /models \
    && chown "${APP_UID}:${APP_UID}" /models

# ---- build base: venv + pip (build stages only), an empty virtualenv, the project's requirements --
FROM python-base AS build-base
# ca-certificates: pip verifies the package index against the system bundle (Debian's pip reads
# /etc/ssl/certs/ca-certificates.crt). Behind a TLS-inspecting proxy, pass the host's bundle as the
# optional secret `ca-bundle` (--secret id=ca-bundle,src=/etc/ssl/certs/ca-certificates.crt): it is
# mounted over that file for the pip steps only and never lands in a layer.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt ./
# Dependencies are installed before the sources (README.md included: it is the package's long
# description) are copied, from the list pyproject.toml gives for an extra: a change to the code or the
# docs then reuses that layer instead of downloading every wheel again.
RUN for extra in serve train; do \
        python3 -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*p['dependencies'], *p['optional-dependencies'][sys.argv[1]], sep='\n')" "$extra" > "requirements-$extra.txt"; \
    done

# ---- the `serve` extra's dependencies (no TensorFlow): the serving virtualenv, and train's starting point -
FROM build-base AS serve-deps
# The wheel cache lives in a cache mount, outside every layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    pip install -c constraints.txt -r requirements-serve.txt

# ---- build the serving virtualenv: the project on top of its dependencies ---------------------------
FROM serve-deps AS build-serve
COPY README.md ./
COPY registry/ registry/
COPY digits/ digits/
COPY service/ service/
COPY training/ training/
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    pip install -c constraints.txt ".[serve]"

# ---- serve: the default runtime image --------------------------------------------------------
FROM python-base AS serve
ARG APP_UID
COPY --from=build-serve /opt/venv /opt/venv
# The registry is expected at /models (a read-only mount in production, see deploy/README.md).
# Caches go to /tmp, the one writable path under the Deployment's read-only root: onnxruntime writes a
# device id under $XDG_CACHE_HOME (~/.cache otherwise), found by the images tier (tests/images).
# The service's default port made explicit for the HEALTHCHECK.
ENV PATH=/opt/venv/bin:$PATH \
    MNIST_MODEL_DIR=/models \
    XDG_CACHE_HOME=/tmp/.cache \
    MNIST_PORT=8000
WORKDIR /home/app
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
# Liveness only: readiness (model loaded + warm-up) belongs to the orchestrator's readiness probe,
# otherwise an empty registry would make Docker restart a process that is merely waiting for a model.
# slim has no curl; urlopen raises on a refused connection or a non-2xx answer, so the exit code is enough.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MNIST_PORT', '8000') + '/health/live', timeout=2)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0"]

# ---- models: the registry to bake in (replace with --build-context models=./models) --------
FROM scratch AS models
COPY models/README.md /README.md

# ---- baked: serve + a registry inside the image -----------------------------------------------
FROM serve AS baked
ARG APP_UID
COPY --from=models --chown=${APP_UID}:${APP_UID} / /models/

# ---- gpu: onnxruntime-gpu on the CUDA runtime ---------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu
ARG APP_UID
ARG ONNXRUNTIME_GPU_VERSION
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The CUDA image tag already pins the distribution snapshot; pinning apt versions on top breaks the
# build each time Ubuntu publishes a security update, so DL3008 is ignored for this one line.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid "${APP_UID}" --user-group --no-create-home --shell /usr/sbin/nologin app \
    && mkdir -p /models \
    && chown "${APP_UID}:${APP_UID}" /models \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY registry/ registry/
COPY digits/ digits/
COPY service/ service/
COPY training/ training/
# `.[serve]` pulls the CPU onnxruntime; both wheels own the same `onnxruntime` package folder,
# so the CPU one is removed before the GPU one goes in (installing over it corrupts the folder).
# Wheel cache and CA bundle: as in build-serve.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    pip install -c constraints.txt ".[serve]" \
    && pip uninstall -y onnxruntime \
    && pip install --no-deps "onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}" \
    && rm -rf /src
ENV MNIST_MODEL_DIR=/models \
    MNIST_PORT=8000 \
    MNIST_DEVICE=cuda \
    XDG_CACHE_HOME=/tmp/.cache
WORKDIR /home/app
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MNIST_PORT', '8000') + '/health/live', timeout=2)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0"]

# ---- train: TensorFlow + the training CLI, publishing into /models -------------------------------
# One stage, installed where it runs: every layer is written out once more when a build commits it, and a
# build stage copied into a runtime one wrote the 2.3 GB virtualenv twice (about 120 s of a cold build
# here). What this image carries beyond serve's runtime (python3-venv, ca-certificates, /src) is a
# few MB beside TensorFlow; the user, the env and the read-only venv are the same as serve's. It starts
# from serve's dependencies, which the train extra shares for the most part (onnxruntime, OpenCV, NumPy,
# grpcio): those are then downloaded, installed and committed once for both images.
FROM serve-deps AS train
ARG APP_UID
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    pip install -c constraints.txt -r requirements-train.txt
COPY README.md ./
COPY registry/ registry/
COPY digits/ digits/
COPY service/ service/
COPY training/ training/
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-bundle,target=/etc/ssl/certs/ca-certificates.crt \
    pip install -c constraints.txt ".[train]"
# Set after the installs: pip would put its cache under XDG_CACHE_HOME, outside the cache mount.
ENV MNIST_MODEL_DIR=/models \
    XDG_CACHE_HOME=/tmp/.cache \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /home/app
USER ${APP_UID}:${APP_UID}
ENTRYPOINT ["python", "-m", "training"]
CMD ["--registry", "/models"]

# ---- default target: `docker build .` gives the serving image ------------------------------------
FROM serve AS runtime
