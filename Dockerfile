# The production image: the API on port 8000, its SQLite database in the /data volume.
#   docker build -t stepline .
#   docker run -p 8000:8000 -v stepline-data:/data stepline
FROM python:3.11.13-slim-bookworm

LABEL org.opencontainers.image.title="stepline" \
      org.opencontainers.image.description="Step pipelines served as REST resources" \
      org.opencontainers.image.licenses="MIT"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# The user the service runs as, and the directory it writes (a fixed uid, so that volumes and
# Kubernetes' runAsNonRoot can rely on it).
RUN groupadd --system --gid 10001 stepline \
    && useradd --system --no-log-init --uid 10001 --gid stepline \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin stepline \
    && mkdir /data \
    && chown stepline:stepline /data

WORKDIR /srv/stepline

# The extras of pyproject.toml installed with the runtime dependencies, comma-separated.
# postgres lets the image use a PostgreSQL store; postgres,ray-cluster makes it the image of
# the scale-out configuration (deploy/compose.yaml), for the API replicas and the Ray head
# and workers alike; an empty EXTRAS gives the embedded mode alone. An unknown extra stops
# the build.
ARG EXTRAS=postgres

# Dependencies in their own layer, before any source: the runtime dependencies pyproject.toml
# names and those of EXTRAS, at the exact versions constraints.txt pins. A change to the code
# does not reinstall them.
COPY pyproject.toml constraints.txt ./
RUN python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; x = p['optional-dependencies']; print('\n'.join(p['dependencies'] + [d for e in filter(None, os.environ['EXTRAS'].split(',')) for d in x[e.strip()]]))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt -c constraints.txt \
    && rm /tmp/requirements.txt

# Then the service itself, without its dependencies (they are all installed above).
COPY README.md ./
COPY steps ./steps
COPY app ./app
COPY stepline_client ./stepline_client
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf build ./*.egg-info

ENV STEPLINE_HOST=0.0.0.0 \
    STEPLINE_DATABASE_URL=sqlite+aiosqlite:////data/stepline.db

VOLUME ["/data"]
EXPOSE 8000
USER 10001:10001

# slim has no curl: ask /healthz with the standard library (urlopen raises unless it is 2xx).
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('STEPLINE_PORT', '8000'), timeout=4)"]

CMD ["stepline", "serve"]
