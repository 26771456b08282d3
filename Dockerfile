# One image for the API and the worker. The API process never imports torch; the worker needs it.
# Build the CPU image by default; pass --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
# for a CUDA worker image.
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

FROM base AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md ./
COPY service service
COPY workers workers
COPY migrations migrations
RUN python -m venv /venv \
 && /venv/bin/pip install --index-url "$TORCH_INDEX" torch==2.13.0 \
 && /venv/bin/pip install '.[worker]'

FROM base AS runtime
# /app (the working directory, where the embedded default keeps its SQLite file dyesp.db) belongs
# to the user the process runs as, so it can write there (and a volume mounted at /app starts
# with that owner); the virtualenv stays root's, so the process cannot change its own code.
RUN useradd --system --uid 10001 dyesp && chown dyesp:dyesp /app
COPY --from=build /venv /venv
ENV PATH=/venv/bin:$PATH DYESP_HOST=0.0.0.0 DYESP_PORT=8000
USER dyesp
EXPOSE 8000
# The API's check; a worker container (`dyesp worker`, no HTTP) needs its own: docker-compose.yml.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["dyesp", "serve", "--workers", "4"]
