# mesh-exporter container image.
#   docker build -t mesh-exporter:0.1.0 .
# Dependencies come only from requirements.lock (exact versions, sha256 hashes, wheels only); regenerate it
# with `make lock` after changing pyproject.toml. Both stages use the same pinned base image, so the
# virtualenv built in the first is valid in the second; the runtime stage has no compiler, no package
# installer (pip, setuptools and wheel are removed) and nothing installed beyond the base and the venv.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# The project itself (its dependencies are all installed above), then the venv's own installer goes.
RUN /opt/venv/bin/pip install --no-deps ./ \
    && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
RUN python -m pip uninstall --yes --disable-pip-version-check pip setuptools wheel
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric UID/GID (no passwd entry needed), the one the manifests' runAsUser/runAsGroup name.
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["exporter"]
CMD ["run"]
