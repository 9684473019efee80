# The batch container: `linestation batch` (one shard of an AWS Batch array job) and
# `linestation batch-merge` (the run's merge job). Headless: no Qt, no camera SDKs.
#
#   docker build -f installer/batch.Dockerfile -t linestation-batch:0.1.0 .
#   docker run --rm linestation-batch:0.1.0 batch --help
#
# Python is pinned to the version the test suite runs on (tests/batch/test_container.py
# checks it against pyproject's requires-python).
FROM python:3.11.7-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LINESTATION_DATA_DIR=/tmp/linestation

WORKDIR /src
COPY pyproject.toml README.md ./
COPY station ./station
COPY cloudsync ./cloudsync
COPY calibration ./calibration

# The runtime pins exactly as pyproject.toml has them, minus what batch never imports (the
# station window and the camera SDKs): opencv stays the headless wheel.
ARG SKIP_PACKAGES="pyside6 pyqtgraph pypylon harvesters genicam"
RUN python -c "import os, tomllib; skip = set(os.environ['SKIP_PACKAGES'].split()); \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
print('\n'.join(d for d in deps if d.split('==')[0].strip().lower() not in skip))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && pip install --no-deps . \
 && rm -rf /src/build /tmp/requirements.txt

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin linestation
USER 10001
WORKDIR /home/linestation

ENTRYPOINT ["linestation"]
CMD ["--help"]
