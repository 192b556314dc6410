# Tandem services image: one image for asr, translate, session and the one-shot `models` job.
#   docker build -t tandem .            docker run ... tandem asr|translate|session
# Models are NOT baked in: mount a volume at /models and fill it once with
#   docker run -v tandem-models:/models --entrypoint python tandem scripts/fetch_models.py --model-dir /models
# (docker-compose.yml does this with its `models` service).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

WORKDIR /app

# Dependencies first (own layer, cached until requirements.txt changes). torch (and its
# companions) are never installed in this image: the services run on CTranslate2/ONNX.
COPY requirements.txt ./
RUN grep -viE '^[[:space:]]*(torch|torchaudio|torchvision)([^A-Za-z0-9_.-]|$)' requirements.txt > /tmp/requirements.image.txt \
    && pip install --no-cache-dir -r /tmp/requirements.image.txt \
    && if pip show --quiet torch 2>/dev/null; then echo "torch must not be in the image" >&2; exit 1; fi \
    && rm /tmp/requirements.image.txt

# The source, then the gRPC stubs (gen/ is generated here, never copied from the host).
COPY . .
RUN python scripts/gen_protos.py \
    && python -m compileall -q services gen

# Unprivileged runtime user. /models is created owned by it so that a fresh named volume
# mounted there inherits that ownership and the `models` job can write into it.
RUN groupadd --system --gid 10001 tandem \
    && useradd --system --uid 10001 --gid tandem --home-dir /home/tandem --create-home --shell /usr/sbin/nologin tandem \
    && mkdir -p /models \
    && chown tandem:tandem /models
USER tandem

ENV PYTHONPATH=/app/gen:/app \
    TANDEM_MODEL_DIR=/models \
    TANDEM_SESSION_HOST=0.0.0.0 \
    TANDEM_ASR_HOST=0.0.0.0 \
    TANDEM_TRANSLATE_HOST=0.0.0.0
VOLUME ["/models"]
EXPOSE 50050 50051 50052

ENTRYPOINT ["python", "-m", "services"]
CMD ["session"]
