#!/usr/bin/env bash
# skillvec developer driver: installs what is missing, builds, and runs.
#
#   scripts/dev.sh demo    build and run the main job: the PaST demo (examples/past_demo), writing
#                          runs/past_demo/{results.json,report.md,*.svg,seed-*/} (extra arguments
#                          go to past_demo, e.g. --quick)
#   scripts/dev.sh test    build and run every test: release build (unit, compile-time,
#                          compile-fail, packaging consumers, 10^8-element accuracy), a clang
#                          build (unit, recipe, compile-time, compile-fail, a 30 s libFuzzer run
#                          of the safetensors header parser), an ASan+UBSan build of the
#                          tests and the command, and a benchmark smoke run; where a CUDA toolkit is found
#                          (no GPU needed), the release build also runs the Thrust backend's tests
#                          on the host (OpenMP) and compiles the CUDA translation units with nvcc
#   scripts/dev.sh bench-gpu   on a CUDA machine: build with -DSKILLVEC_CUDA=ON, run the Thrust
#                          tests on the GPU, then benchmarks/bench_gpu (256 MiB tensors, against a
#                          device-to-device copy) into runs/bench_gpu.json (extra arguments go to it)
#   scripts/dev.sh deps    only install the Debian packages that are missing
#
# Environment: BUILD_DIR (default build), CLANG_BUILD_DIR (default build-clang),
# ASAN_BUILD_DIR (default build-asan), CUDA_BUILD_DIR (default build-cuda), CUDA_HOME (default
# /usr/local/cuda), JOBS (default nproc).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
asan_build="${ASAN_BUILD_DIR:-$root/build-asan}"
clang_build="${CLANG_BUILD_DIR:-$root/build-clang}"
jobs="${JOBS:-$(nproc)}"

# Debian 12 packages skillvec builds against; versions are pinned in cmake/skillvecDependencies.cmake.
packages=(cmake g++ clang make python3 libxtensor-dev libxsimd-dev nlohmann-json3-dev libcli11-dev libyaml-cpp-dev catch2 libbenchmark-dev libclang-rt-14-dev)

log() { printf '\n== [%s, %d s] %s\n' "$(date +%H:%M:%S)" "$SECONDS" "$*" >&2; }

deps() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}

# The interop tests' reference implementation, pinned (tests/interop/interop.py).
py_packages=(numpy==2.1.3 safetensors==0.4.5)

py_deps() {
  local want="import numpy, safetensors; assert (numpy.__version__, safetensors.__version__) == ('2.1.3', '0.4.5')"
  python3 -c "$want" 2>/dev/null && return
  log "installing ${py_packages[*]} (pip)"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq python3-pip
  fi
  # Debian's own python3 refuses a plain pip install (PEP 668); a pyenv or venv python does not.
  python3 -m pip install -q --disable-pip-version-check "${py_packages[@]}" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "${py_packages[@]}"
  python3 -c "$want"
}

configure() { # configure <dir> <cmake args...>
  local dir="$1"; shift
  # The python3 that py_deps installed into, not whichever one FindPython3 prefers.
  cmake -S "$root" -B "$dir" -DPython3_EXECUTABLE="$(command -v python3)" "$@" >/dev/null
}

demo() {
  deps
  log "building the PaST demo (release)"
  configure "$build" -DCMAKE_BUILD_TYPE=Release
  cmake --build "$build" -j "$jobs" --target past_demo skillvec_cli
  log "running the PaST demo on bioS-mini: every arm, 3 seeds (about 5 minutes on 2 cores)"
  "$build/examples/past_demo" --out "${PAST_DEMO_OUT:-$root/runs/past_demo}" "$@"
}

test_all() {
  deps
  py_deps
  export SKILLVEC_REQUIRE_INTEROP=1 # a missing numpy/safetensors fails the interop test instead of skipping it
  log "release build"
  # The Thrust backend needs CCCL and nvcc from a CUDA toolkit, not a GPU.
  local cuda=(-DSKILLVEC_THRUST_TESTS=OFF -DSKILLVEC_NVCC_CHECK=OFF)
  if [[ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]]; then
    cuda=(-DSKILLVEC_THRUST_TESTS=ON -DSKILLVEC_NVCC_CHECK=ON)
  else
    log "NOTE: no CUDA toolkit at ${CUDA_HOME:-/usr/local/cuda}: skipping the Thrust tests and the nvcc check"
  fi
  configure "$build" -DCMAKE_BUILD_TYPE=Release "${cuda[@]}"
  cmake --build "$build" -j "$jobs"
  log "release tests"
  (cd "$build" && ctest -j "$jobs" --output-on-failure)

  log "clang build (unit, recipe, compile-time and compile-fail tests, libFuzzer on the safetensors header)"
  CXX=clang++ configure "$clang_build" -DCMAKE_BUILD_TYPE=Release -DSKILLVEC_LARGE_TESTS=OFF \
    -DSKILLVEC_CONSUMER_TESTS=OFF -DSKILLVEC_BUILD_BENCHMARKS=OFF -DSKILLVEC_BUILD_EXAMPLES=OFF -DSKILLVEC_FUZZ=ON \
    -DSKILLVEC_NN_TESTS=OFF
  cmake --build "$clang_build" -j "$jobs"
  (cd "$clang_build" && ctest -j "$jobs" --output-on-failure)

  log "ASan+UBSan build (baseline x86-64: SSE2 and software f16 paths)"
  # -O1 -g1 (ASan's recommended level, line tables only): compiles 2.5x faster than -O2 -g, and
  # the CI budget is mostly this build's compile time.
  configure "$asan_build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1 -DNDEBUG" \
    -DSKILLVEC_SANITIZE=ON -DSKILLVEC_NATIVE=OFF -DSKILLVEC_EXAMPLE_RUNS=OFF \
    -DSKILLVEC_LARGE_TESTS=OFF -DSKILLVEC_CONSUMER_TESTS=OFF -DSKILLVEC_BUILD_BENCHMARKS=OFF
  cmake --build "$asan_build" -j "$jobs"
  log "ASan+UBSan tests"
  (cd "$asan_build" && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest -j "$jobs" --output-on-failure)

  log "benchmark smoke run (bench_kernels --fast, rendered to a scratch file; the full run is benchmarks/report)"
  python3 "$root/benchmarks/report" --fast --build "$build"
  log "all tests passed"
}

bench_gpu() {
  deps
  local dir="${CUDA_BUILD_DIR:-$root/build-cuda}" out="$root/runs/bench_gpu.json"
  log "CUDA build: the skillvec command with --device gpu, the Thrust tests and bench_gpu"
  configure "$dir" -DCMAKE_BUILD_TYPE=Release -DSKILLVEC_CUDA=ON -DSKILLVEC_CONSUMER_TESTS=OFF
  cmake --build "$dir" -j "$jobs" --target skillvec_thrust_tests_cuda bench_gpu skillvec_cli
  log "Thrust tests on the GPU"
  "$dir/tests/thrust/skillvec_thrust_tests_cuda"
  log "GPU benchmark (ratio_to_copy: kernel bandwidth / device-to-device copy bandwidth, same run)"
  mkdir -p "$(dirname "$out")"
  "$dir/benchmarks/bench_gpu" --benchmark_out="$out" --benchmark_out_format=json "$@"
  log "wrote $out"
}

case "${1:-}" in
  demo) shift; demo "$@" ;;
  bench-gpu) shift; bench_gpu "$@" ;;
  test) test_all ;;
  deps) deps ;;
  *) echo "usage: $0 demo|test|bench-gpu|deps" >&2; exit 2 ;;
esac
