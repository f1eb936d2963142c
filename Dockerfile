# Two images from one file, both on the same slim Python base:
#   docker build --target runtime  -t poet-monitor/runtime:0.1.0  .   (`poetmon serve`: one monitor version)
#   docker build --target operator -t poet-monitor/operator:0.1.0 .   (`poetmon operator`: the kopf operator)
# `make images` runs both. The package is built into a wheel in a builder stage; each final image gets only a
# ready virtual environment (/opt/poet), so no compiler, pip cache or source tree reaches it.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder: the poet-monitor wheel
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY monitor_runtime/ monitor_runtime/
COPY operator/poet_operator/ operator/poet_operator/
RUN python -m pip wheel --no-deps --no-cache-dir --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime environment: base distribution + Arrow
# The base distribution has no kopf, kubernetes or openai. pyarrow lets the runtime accept Arrow IPC bodies.
# Dependencies first, from pyproject.toml alone, so a source change rebuilds only the last small layer.
FROM ${PYTHON_IMAGE} AS runtime-env
COPY pyproject.toml /tmp/pyproject.toml
RUN python -m venv /opt/poet \
    && python -c "import sys, tomllib; p = tomllib.load(open(sys.argv[1], 'rb'))['project']; \
                print(*p['dependencies'], *p['optional-dependencies'][sys.argv[2]], sep='\\n')" \
                /tmp/pyproject.toml parquet > /tmp/requirements.txt \
    && /opt/poet/bin/pip install --no-cache-dir -r /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN /opt/poet/bin/pip install --no-cache-dir --no-deps /wheels/poet_monitor-*.whl \
    && /opt/poet/bin/pip uninstall --yes pip

# ---------------------------------------------------------------- operator environment: + the operator extra
FROM ${PYTHON_IMAGE} AS operator-env
COPY pyproject.toml /tmp/pyproject.toml
RUN python -m venv /opt/poet \
    && python -c "import sys, tomllib; p = tomllib.load(open(sys.argv[1], 'rb'))['project']; \
                print(*p['dependencies'], *p['optional-dependencies'][sys.argv[2]], sep='\\n')" \
                /tmp/pyproject.toml operator > /tmp/requirements.txt \
    && /opt/poet/bin/pip install --no-cache-dir -r /tmp/requirements.txt
COPY --from=wheel /wheels /wheels
RUN /opt/poet/bin/pip install --no-cache-dir --no-deps /wheels/poet_monitor-*.whl \
    && /opt/poet/bin/pip uninstall --yes pip

# ---------------------------------------------------------------- runtime image
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="poet-monitor runtime" \
      org.opencontainers.image.description="Serves one generated drift monitor version (poetmon serve)" \
      org.opencontainers.image.licenses="Apache-2.0"
# A fixed UID/GID so the pod's securityContext (runAsUser 10001) and file ownership agree.
RUN groupadd --gid 10001 poet \
    && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin poet \
    && mkdir -p /etc/poet/version /etc/poet/reference /var/lib/poet/checkpoints \
    && chown 10001:10001 /var/lib/poet/checkpoints
COPY --from=runtime-env /opt/poet /opt/poet
ENV PATH=/opt/poet/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["poetmon"]
CMD ["serve", "--code-dir", "/etc/poet/version", "--host", "0.0.0.0", "--port", "8080", \
     "--checkpoint-dir", "/var/lib/poet/checkpoints", "--termination-log", "/dev/termination-log", \
     "--reference-file", "/etc/poet/reference/reference.npz"]

# ---------------------------------------------------------------- operator image (last: the default target)
FROM ${PYTHON_IMAGE} AS operator
LABEL org.opencontainers.image.title="poet-monitor operator" \
      org.opencontainers.image.description="Generates, enforces, rolls out and heals ModelMonitors (poetmon operator)" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --gid 10001 poet \
    && useradd --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin poet
COPY --from=operator-env /opt/poet /opt/poet
ENV PATH=/opt/poet/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8081 9090
ENTRYPOINT ["poetmon"]
CMD ["operator"]
