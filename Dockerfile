# runmeter collector (and CLI) image, as the Helm chart runs it.
#   docker build -t ghcr.io/runmeter/runmeter:0.1.0 .
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY conventions conventions
COPY processor processor
COPY instrumentation instrumentation
COPY exporter exporter
COPY collector collector
COPY runmeter runmeter
RUN pip install --no-cache-dir -c constraints.txt '.[collector]' && rm -rf /src
RUN useradd --uid 10001 --create-home runmeter && mkdir -p /var/lib/runmeter && chown runmeter /var/lib/runmeter
USER 10001
WORKDIR /var/lib/runmeter
# The collector listens on 127.0.0.1 unless told otherwise: in a container, set
# RUNMETER_COLLECTOR_GRPC_ENDPOINT=0.0.0.0:4317 (and _HTTP_, _ADMIN_) with a tokens file
# (RUNMETER_COLLECTOR_TOKENS_FILE), as the Helm chart does.
EXPOSE 4317 4318 8888
ENTRYPOINT ["runmeter"]
CMD ["collector"]
