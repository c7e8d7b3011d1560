# runmeter collector (and CLI) image, as the Helm chart runs it.
#   docker build -t ghcr.io/runmeter/runmeter:0.1.0 .
# The wheel is built where a C compiler is (the receiver's check, collector/_otlpscan.c, the
# rows' attribute maps, exporter/_speedups.c, and the Native block writer, exporter/_blocks.c),
# then installed into the slim image.
FROM python:3.11 AS build
WORKDIR /src
COPY pyproject.toml setup.py constraints.txt README.md ./
COPY core core
COPY conventions conventions
COPY processor processor
COPY instrumentation instrumentation
COPY exporter exporter
COPY collector collector
COPY runmeter runmeter
COPY examples examples
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt "$(ls /wheels/runmeter-*.whl)[collector]" \
 && python -c "import runmeter.collector._otlpscan, runmeter.exporter._speedups, runmeter.exporter._blocks" && rm -rf /wheels /tmp/constraints.txt
RUN useradd --uid 10001 --create-home runmeter && mkdir -p /var/lib/runmeter && chown runmeter /var/lib/runmeter
USER 10001
WORKDIR /var/lib/runmeter
# The collector listens on 127.0.0.1 unless told otherwise: in a container, set
# RUNMETER_COLLECTOR_GRPC_ENDPOINT=0.0.0.0:4317 (and _HTTP_, _ADMIN_) with a tokens file
# (RUNMETER_COLLECTOR_TOKENS_FILE), as the Helm chart does.
EXPOSE 4317 4318 8888
ENTRYPOINT ["runmeter"]
CMD ["collector"]
