# The image every agent container of docker-compose.kafka.yml runs.
FROM python:3.11-slim
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
COPY pyproject.toml README.md ./
COPY agents agents
COPY orchestrator orchestrator
COPY topics topics
COPY indicators indicators
COPY strategies strategies
COPY execution execution
COPY memory memory
COPY config config
COPY infra infra
COPY cli cli
RUN pip install .
USER nobody
ENV HOME=/tmp
ENTRYPOINT []
CMD ["cryptiq", "run"]
