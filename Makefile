# A thin layer over CMake. `make demo` and `make test` are the two commands of the README.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all build deps demo test bench gradcheck clean

all: build

# Install missing Debian packages first when CMake cannot find them.
deps:
	@./scripts/install-deps.sh --check-only >/dev/null 2>&1 || ./scripts/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/mmg demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

gradcheck: build
	./$(BUILD)/mmg gradcheck --all

# The CUDA bench where a GPU is usable, else the CPU one (mmg_bench --device auto picks);
# e.g. make bench BENCH_ARGS="--kernel attention --markdown".
BENCH_ARGS ?=
bench: build
	./$(BUILD)/mmg_bench --device auto $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
