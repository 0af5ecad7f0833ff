# The Meterflow worker image for Cloud Run jobs and ECS tasks: Python 3.11 and the runtime
# dependencies at exactly the versions in requirements.lock (the versions the tests ran with).
# The code itself is not baked in: each flow run fetches it with its deployment's pull steps
# (pull_from_gcs or git_clone, see prefect.yaml), so a code change needs no new image; a
# dependency change does (edit pyproject.toml, `make lock`, rebuild).
#
#   docker build -t europe-docker.pkg.dev/PROJECT/meterflow/worker:$(git rev-parse --short HEAD) .
#
# The participants' portal (`meterflow serve`) is a Cloud Run service: it has no pull steps, so
# its image (target `portal`) holds the code of the commit it was built from:
#
#   docker build --target portal -t europe-docker.pkg.dev/PROJECT/meterflow/portal:$(git rev-parse --short HEAD) .
FROM python:3.11.7-slim-bookworm AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# git for the git_clone pull step (aws target).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/meterflow
COPY requirements.lock pyproject.toml ./
# Runtime dependencies from pyproject.toml, every version (transitive ones too) pinned by the lock.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > runtime.txt \
    && pip install --constraint requirements.lock --requirement runtime.txt \
    && pip check

RUN useradd --create-home --uid 10001 meterflow
USER meterflow
WORKDIR /home/meterflow

FROM runtime AS portal
COPY --chown=meterflow . /home/meterflow/meterflow
RUN pip install --user --no-deps --no-build-isolation /home/meterflow/meterflow
ENV PATH=/home/meterflow/.local/bin:$PATH \
    METERFLOW_PORTAL_SECURE_COOKIES=true
# Cloud Run sets PORT; settings come from METERFLOW_PORTAL_* (docs/portal.md).
CMD ["sh", "-c", "exec meterflow serve --host 0.0.0.0 --port ${PORT:-8080}"]

# The worker image stays the default target.
FROM runtime AS worker
