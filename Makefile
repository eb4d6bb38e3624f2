# Convenience wrapper around CMake. The two commands a newcomer needs:
#   make run    install dependencies, build, start droverd on loopback
#   make test   install dependencies, build with ASan+UBSan, run every test
BUILD       ?= build
TEST_BUILD  ?= build-test
DATA_DIR    ?= ./drover-data
JOBS        ?= $(shell nproc)

.PHONY: all deps build run test bench clean format format-check

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/droverd --data-dir $(DATA_DIR)

test: deps
	@cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug -DDROVER_SANITIZE=ON >/dev/null
	@cmake --build $(TEST_BUILD) -j $(JOBS)
	cd $(TEST_BUILD) && ctest --output-on-failure -j 2

bench: build
	./bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	clang-format --dry-run -Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(TEST_BUILD)
