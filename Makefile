# Two commands do all set-up on a fresh machine with Python 3 and make:
#   make demo   - the main job, on the embedded store
#   make test   - the tests
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
EXTRAS := embedded,openai,anthropic,gemini,bedrock,collector,ui,test

.PHONY: demo test bench generate clean compiler

# The collector's receiver check and the rows' attribute maps are compiled with the package (setup.py):
# Debian's gcc is installed here when there is no C compiler (without one, runmeter still installs
# and checks requests in Python; make test checks the compiled one too).
compiler:
	@if command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get install -y -q gcc >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q gcc >/dev/null); \
	else echo "no C compiler: runmeter installs without its compiled receiver check (make test needs it: sudo apt-get install gcc)" >&2; fi

$(STAMP): pyproject.toml setup.py collector/_otlpscan.c exporter/_speedups.c exporter/_blocks.c constraints.txt | compiler
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[$(EXTRAS)]'
	touch $@

demo: $(STAMP)
	$(BIN)/python -m runmeter.demo

# The HTML report is tested in a real headless Chromium: Debian's, installed here when missing
# (Playwright's own browser download does not work offline).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q chromium fonts-liberation >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q chromium fonts-liberation >/dev/null); \
	else echo "make test needs Debian's chromium for the HTML report test: sudo apt-get install chromium" >&2; exit 1; fi

# The instrumentation tests run again on the previous openai major (2.x), which many agents pin.
V2 := .venv-openai2
$(V2)/.installed-stamp: pyproject.toml setup.py collector/_otlpscan.c exporter/_speedups.c exporter/_blocks.c constraints-openai2.txt | compiler
	test -x $(V2)/bin/python || $(PY) -m venv $(V2)
	$(V2)/bin/python -m pip install -q --upgrade pip
	$(V2)/bin/python -m pip install -q -c constraints-openai2.txt -e '.[$(EXTRAS)]'
	touch $@

# An environment that sees .venv's packages plus opentelemetry-distro, to test the two distros side by side,
# and the urllib3 instrumentation, to test that runmeter never traces its own ClickHouse inserts (its newest
# release pins the previous opentelemetry-instrumentation, so it comes without its dependencies).
DISTRO := .venv-otel-distro
$(DISTRO)/.installed-stamp: $(STAMP)
	test -x $(DISTRO)/bin/python || $(PY) -m venv $(DISTRO)
	$(DISTRO)/bin/python -c "import site, sysconfig, pathlib; main = '$(abspath $(VENV))'; \
	  src = pathlib.Path(main, 'lib', f'python{sysconfig.get_python_version()}', 'site-packages'); \
	  pathlib.Path(sysconfig.get_paths()['purelib'], 'runmeter-main.pth').write_text(f'import site; site.addsitedir({str(src)!r})\n')"
	$(DISTRO)/bin/python -m pip install -q --no-deps "opentelemetry-distro==0.66b2" \
	  "opentelemetry-instrumentation-urllib3==0.66b1" "opentelemetry-util-http==0.66b1"
	touch $@

# The lowest OpenTelemetry runmeter supports, pinned by constraints-otel-min.txt, over .venv's other
# packages: the processor and instrumentation tests run again on it (the SDK's internals that the
# fast paths read must be there too).
MIN := .venv-otel-min
$(MIN)/.installed-stamp: $(STAMP) constraints-otel-min.txt
	test -x $(MIN)/bin/python || $(PY) -m venv $(MIN)
	$(MIN)/bin/python -c "import site, sysconfig, pathlib; main = '$(abspath $(VENV))'; \
	  src = pathlib.Path(main, 'lib', f'python{sysconfig.get_python_version()}', 'site-packages'); \
	  pathlib.Path(sysconfig.get_paths()['purelib'], 'runmeter-main.pth').write_text(f'import site; site.addsitedir({str(src)!r})\n')"
	$(MIN)/bin/python -m pip install -q --no-deps -r constraints-otel-min.txt
	touch $@

# Agent frameworks as users run them: LangGraph with OpenLLMetry's or OpenInference's LangChain
# instrumentation, the OpenAI Agents SDK with OpenInference's, over .venv's packages, pinned by
# constraints-frameworks.txt (tests/frameworks runs there).
FW := .venv-frameworks
$(FW)/.installed-stamp: $(STAMP) constraints-frameworks.txt
	test -x $(FW)/bin/python || $(PY) -m venv $(FW)
	$(FW)/bin/python -c "import site, sysconfig, pathlib; main = '$(abspath $(VENV))'; \
	  src = pathlib.Path(main, 'lib', f'python{sysconfig.get_python_version()}', 'site-packages'); \
	  pathlib.Path(sysconfig.get_paths()['purelib'], 'runmeter-main.pth').write_text(f'import site; site.addsitedir({str(src)!r})\n')"
	$(FW)/bin/python -m pip install -q --no-deps -r constraints-frameworks.txt
	touch $@

# The collector is tested with a Node.js client too: the OpenTelemetry JS SDK from npm, pinned by the lock file.
NODE_STAMP := tests/node/node_modules/.package-lock.json
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error

# The Helm chart is rendered in the tests with Go's text/template and sprig (the engines Helm uses):
# Debian's Go and sprig, installed here when missing (there is no helm binary offline).
GO_STAMP := /usr/share/gocode/src/github.com/Masterminds/sprig
$(GO_STAMP):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev >/dev/null); \
	else echo "make test needs Go and sprig to render the Helm chart: sudo apt-get install golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev" >&2; exit 1; fi

# pytest exits 5 when it collected no tests: that fails here too, with a word why.
test: $(STAMP) $(V2)/.installed-stamp $(DISTRO)/.installed-stamp $(MIN)/.installed-stamp $(FW)/.installed-stamp $(CHROMIUM) $(NODE_STAMP) $(GO_STAMP)
	@$(BIN)/python -c "import runmeter.collector._otlpscan, runmeter.exporter._speedups, runmeter.exporter._blocks" 2>/dev/null || { echo "make test: the compiled \
	parts (collector/_otlpscan.c, exporter/_speedups.c, exporter/_blocks.c) were not built - a C compiler and Python's headers are needed; then: touch setup.py && make test" >&2; exit 1; }
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; [ $$status -eq 0 ] || exit $$status; \
	echo "--- again on openai 2.x ($(V2))"; \
	$(V2)/bin/python -m pytest -q -p no:cacheprovider tests/test_instrumentation_openai.py tests/test_client_paths.py tests/test_zero_code.py
	@echo "--- again with the SDK fast paths off (the public API only)"
	RUNMETER_SDK_FAST_PATHS=0 $(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests/test_processor_live.py \
	  tests/test_run_assembly.py tests/test_dialects.py tests/test_client_paths.py tests/test_storage.py tests/test_sdk_paths.py
	@echo "--- again on the lowest OpenTelemetry supported ($(MIN))"
	$(MIN)/bin/python -c "from opentelemetry.sdk.version import __version__ as v; assert v == '1.39.0', v"
	$(MIN)/bin/python -m pytest -q -p no:cacheprovider -m "not slow" tests/test_processor_live.py tests/test_run_assembly.py \
	  tests/test_dialects.py tests/test_instrumentation_openai.py tests/test_instrumentation_anthropic.py tests/test_client_paths.py tests/test_run_api.py
	@echo "--- the agent frameworks ($(FW))"
	$(FW)/bin/python -m pytest -q -p no:cacheprovider tests/frameworks

# Benchmarks run in their own environment: it also holds the official OpenAI instrumentation.
BENCH := .venv-bench
$(BENCH)/.installed-stamp: pyproject.toml setup.py collector/_otlpscan.c exporter/_speedups.c exporter/_blocks.c constraints.txt
	test -x $(BENCH)/bin/python || $(PY) -m venv $(BENCH)
	$(BENCH)/bin/python -m pip install -q --upgrade pip
	$(BENCH)/bin/python -m pip install -q -c constraints.txt -e '.[embedded,openai,gemini,bedrock,collector,bench]'
	# the official botocore instrumentation pins the previous opentelemetry-instrumentation: without its dependencies
	$(BENCH)/bin/python -m pip install -q --no-deps "opentelemetry-instrumentation-botocore==0.66b1" "opentelemetry-propagator-aws-xray==1.0.2"
	touch $@

# Instruction counts (the instrumentation benchmark's noise-free mode) need valgrind.
VALGRIND := /usr/bin/valgrind
$(VALGRIND):
	@if [ "$$(id -u)" = 0 ]; then apt-get install -y -q valgrind >/dev/null || \
	  (apt-get update -q >/dev/null && apt-get install -y -q valgrind >/dev/null); \
	else echo "make bench needs valgrind: sudo apt-get install valgrind" >&2; exit 1; fi

bench: $(BENCH)/.installed-stamp $(FW)/.installed-stamp $(VALGRIND)
	$(BENCH)/bin/python benchmarks/pricing.py
	$(BENCH)/bin/python benchmarks/processor_throughput.py --callgrind
	$(BENCH)/bin/python benchmarks/processor_throughput.py
	$(BENCH)/bin/python benchmarks/instrumentation_overhead.py --callgrind
	$(FW)/bin/python benchmarks/provider_overhead.py
	$(BENCH)/bin/python benchmarks/instrumentation_overhead.py
	$(BENCH)/bin/python benchmarks/export_throughput.py
	$(BENCH)/bin/python benchmarks/worker_instructions.py
	$(BENCH)/bin/python benchmarks/sweep_open_traces.py
	$(BENCH)/bin/python benchmarks/store_parts.py
	$(BENCH)/bin/python benchmarks/collector_ingest.py

generate: $(STAMP)
	$(BIN)/python conventions/generate.py

clean:
	rm -rf $(VENV) $(V2) $(BENCH) $(DISTRO) $(MIN) .runmeter .runmeter-demo build dist *.egg-info
