# syntax=docker/dockerfile:1
# Build: a virtualenv with roi and its dependencies. Run: the same venv on a slim image, as a non-root user.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/roi
COPY pyproject.toml README.md ./
COPY app app
COPY domain domain
COPY db db
COPY workers workers
COPY infra infra
COPY web web
RUN /opt/roi/bin/pip install .

FROM python:3.11-slim AS runtime
RUN useradd --system --create-home --home-dir /var/lib/roi --uid 10001 roi
COPY --from=build /opt/roi /opt/roi
ENV PATH=/opt/roi/bin:$PATH \
    ROI_DATA_DIR=/var/lib/roi \
    PYTHONUNBUFFERED=1
USER roi
WORKDIR /var/lib/roi
# Uploads (and, without DATABASE_URL/REDIS_URL, the embedded servers' data) live here: keep it on a volume.
VOLUME /var/lib/roi
EXPOSE 8000
# Set DATABASE_URL and REDIS_URL in production; without them roi starts embedded servers under ROI_DATA_DIR.
CMD ["roi", "serve", "--host", "0.0.0.0", "--port", "8000"]
HEALTHCHECK --interval=10s --timeout=2s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
