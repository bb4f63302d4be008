# syntax=docker/dockerfile:1
# One image for the gateway (default command) and the processor (`ocpp-processor`).
#
#   docker build -t ocpp-mqtt-gateway .
#   docker run -p 8080:8080 -e GATEWAY_MQTT_URL=mqtt://broker:1883 ocpp-mqtt-gateway
#   docker run -e PROCESSOR_MQTT_URL=mqtt://broker:1883 ocpp-mqtt-gateway ocpp-processor
#
# The base image is pinned by digest (the multi-platform index of python:3.11-slim-bookworm,
# Python 3.11.16, as recorded in github.com/docker-library/repo-info,
# repos/python/remote/3.11-slim-bookworm.md): the same bytes on every build until the digest is
# changed in both FROM lines. To move to a newer base: `docker buildx imagetools inspect
# python:3.11-slim-bookworm` prints the current digest. For AWS, build for the task's
# cpu_architecture: `docker build --platform linux/amd64` (X86_64) or `linux/arm64` (ARM64).
# --- build: a virtualenv with the pinned dependencies and the project -----------------------
FROM python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the lock file only, so code changes reuse this layer.
COPY requirements.lock ./
RUN pip install --no-cache-dir --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY processor ./processor
COPY simulator ./simulator
# --no-deps: nothing may come in that the lock file does not pin; `pip check` proves the lock
# satisfies the project's metadata (extras aws and fast).
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && python -c "import gateway.cli, processor.cli, boto3, awsiot, uvloop"

# --- runtime: the virtualenv, the registry file and nothing else -----------------------------
FROM python:3.11-slim-bookworm@sha256:0bee7276f83efd4a1ee05bbbf4281d95ed28e079220a9457f25a93e3f1e3c31b AS runtime
RUN groupadd --system --gid 10001 ocpp \
    && useradd --system --uid 10001 --gid ocpp --home-dir /app --no-create-home ocpp
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=ocpp:ocpp config/ ./config/
COPY docker/healthcheck.py /usr/local/lib/ocpp/healthcheck.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GATEWAY_PORT=8080 \
    GATEWAY_LOG_FORMAT=json \
    GATEWAY_REGISTRY=file \
    GATEWAY_REGISTRY_FILE=/app/config/things.txt \
    GATEWAY_SHUTDOWN_TIMEOUT=8
USER 10001:10001
EXPOSE 8080
# `docker stop` sends SIGTERM and waits 10 s by default: the gateway closes every CP socket
# with 1012 and exits within GATEWAY_SHUTDOWN_TIMEOUT (8 s), before the SIGKILL.
# Orchestrators that wait longer (ECS stopTimeout, compose stop_grace_period) raise both.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "/usr/local/lib/ocpp/healthcheck.py"]
CMD ["ocpp-gateway"]
