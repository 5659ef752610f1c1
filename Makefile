# warren — common developer tasks. `make` (or `make help`) lists them.

GO ?= go
GOFMT ?= gofmt
SERVICES := scripts/services.sh

# Extra flags for `go test` in `make test`, e.g. make test TESTFLAGS='-run TestX -v'.
# ARGS is accepted as well: make test ARGS=-short
TESTFLAGS ?=
ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help build run test test-short soak fuzz lint clean services-up services-down services-status bench bench-autoscale

help:
	@echo 'Targets:'
	@echo '  build            build bin/warren'
	@echo '  run              start RabbitMQ and Redis, build, run `bin/warren dev` (Ctrl-C stops it)'
	@echo '  test             start RabbitMQ and Redis, then go test -race ./... (extra flags: TESTFLAGS=... or ARGS=...)'
	@echo '  test-short       go test -short ./... (no services needed)'
	@echo '  soak             start RabbitMQ and Redis, then TestSoak for SOAK (default 10m): jobs submitted while'
	@echo '                   workers, the API and RabbitMQ are killed and restarted; fails on any lost job'
	@echo '                   (SOAK_SEED=... replays a run; full log in bin/soak.log; `make test` runs a short one)'
	@echo '  fuzz             run every fuzz target (func Fuzz... in a _test.go file) for FUZZTIME each (default 20s),'
	@echo '                   one at a time; a failing input is saved in its package'"'"'s testdata/fuzz/ (`make test`'
	@echo '                   runs the seeds there as tests). FUZZ=regexp picks targets by name'
	@echo '  lint             gofmt -l (fails on unformatted files) and go vet'
	@echo '  bench            warren against the raw RabbitMQ+Redis limit, as ratios (N=jobs, default 20000;'
	@echo '                   ARGS=-workers=1,2,4 adds scaling, ARGS=-soak=1000000 a memory soak); bench/out/'
	@echo '  bench-autoscale  a step load on a CPU-bound pool: fixed min vs fixed max vs autoscaled'
	@echo '                   (time to drain, replica-seconds; ARGS=... passes flags, e.g. ARGS=-jobs=400)'
	@echo '  services-up      start RabbitMQ and Redis on loopback, or reuse running ones (scripts/services.sh)'
	@echo '  services-down    stop the RabbitMQ and Redis that services-up started'
	@echo '  services-status  report whether RabbitMQ and Redis answer'
	@echo '  clean            remove bin/'
	@echo 'Servers: WARREN_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/),'
	@echo '         WARREN_REDIS_URL (default redis://127.0.0.1:6379/0).'

build:
	$(GO) build -o bin/warren ./cmd/warren

services-up:
	$(SERVICES) up

services-down:
	$(SERVICES) down

services-status:
	$(SERVICES) status

# build does not need the services; it is ordered after services-up only when
# make runs serially.
run: services-up build
	exec ./bin/warren dev

# The crash and outage tests write their summary lines (submitted=… lost=…)
# to bin/test-summary.txt; they are printed after the run.
test: services-up
	@$(SERVICES) python-deps
	@$(SERVICES) browser
	@mkdir -p bin && rm -f bin/test-summary.txt
	WARREN_TEST_SUMMARY=$(CURDIR)/bin/test-summary.txt $(GO) test -race -count=1 -timeout 12m $(TESTFLAGS) $(ARGS) ./...
	@# Allocation counts mean nothing under the race detector: this one runs without it.
	$(GO) test -count=1 -run '^TestCostCoversAllocations$$' ./workers/image/
	@if [ -s bin/test-summary.txt ]; then echo 'Summaries:'; sed 's/^/  /' bin/test-summary.txt; fi

# The soak (cmd/warren/soak_test.go): SOAK of faults, then every accepted job
# must succeed. Its own lines and the summary are printed; the processes'
# logs are in bin/soak.log. SOAK_TIMEOUT bounds the whole run.
SOAK ?= 10m
SOAK_SEED ?=
SOAK_TIMEOUT ?= 1h
soak: services-up
	@mkdir -p bin && rm -f bin/soak-summary.txt
	@echo 'soak: $(SOAK) of faults (the full log goes to bin/soak.log)'
	@WARREN_TEST_SUMMARY=$(CURDIR)/bin/soak-summary.txt $(GO) test -race -count=1 -timeout $(SOAK_TIMEOUT) \
		-run '^TestSoak$$' -v $(TESTFLAGS) ./cmd/warren/ -args -soak=$(SOAK) $(if $(SOAK_SEED),-soak.seed=$(SOAK_SEED)) \
		>bin/soak.log 2>&1; status=$$?; \
	grep -v 'outage_test.go:[0-9]*: \[' bin/soak.log; \
	if [ -s bin/soak-summary.txt ]; then echo 'Summary:'; sed 's/^/  /' bin/soak-summary.txt; fi; \
	exit $$status

test-short:
	$(GO) test -short $(TESTFLAGS) $(ARGS) ./...

# Every fuzz target is found by its name, so a new one is included without
# editing this file; go test -fuzz takes one target at a time.
FUZZTIME ?= 20s
FUZZ ?= .
fuzz:
	@grep -rlE --include='*_test.go' --exclude-dir=.git '^func Fuzz[A-Za-z0-9_]*\(' . | sort | while read -r file; do \
		for name in $$(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(.*/\1/p' "$$file" | grep -E '$(FUZZ)'); do \
			echo "fuzz: $$name ($$(dirname "$$file")) for $(FUZZTIME)"; \
			$(GO) test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) "$$(dirname "$$file")" || exit 1; \
		done; \
	done

lint:
	@out=$$($(GOFMT) -l .) || exit 1; \
	if [ -n "$$out" ]; then echo 'gofmt: these files need formatting (run gofmt -w):'; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Three rounds of the baseline and warren on the same servers (about seven
# minutes on 2 cores at the default N); results and profiles go to bench/out/.
N ?= 20000
bench: services-up build
	$(GO) run ./bench -warren bin/warren -n $(N) $(ARGS)

# The step load runs three times (about 2 minutes in all on 2 cores); figures
# go to the terminal and bench/out/autoscale.json.
bench-autoscale: services-up build
	$(GO) run ./bench/autoscale -warren bin/warren $(ARGS)

clean:
	rm -rf bin/
