# The Thrust backend's build: where CCCL is, the nvcc flags skillvec needs, and three switches.
#
#   SKILLVEC_CUDA=ON          a real CUDA build (needs nvcc; a GPU only to run): the skillvec command
#                             with --device gpu, tests/thrust on the GPU (skillvec_thrust_tests_cuda)
#                             and benchmarks/bench_gpu. CMake 3.25 does not know C++20 for nvcc 13,
#                             so the standard flag is supplied here (CMAKE_CUDA20_STANDARD_COMPILE_OPTION).
#   SKILLVEC_THRUST_TESTS=ON  tests/thrust built with the C++ compiler on Thrust's OpenMP device
#                             system: the backend tested on the host, no GPU, no nvcc.
#   SKILLVEC_NVCC_CHECK=ON    compile (only) every CUDA translation unit with nvcc for sm_90, as part
#                             of `all`: a change that breaks the CUDA build fails CI without a GPU.
#
# CCCL 3 (Thrust, CUB, libcu++) is found under the CUDA toolkit; Debian's older libthrust-dev is
# not used.

option(SKILLVEC_CUDA "Build the CUDA targets (skillvec --device gpu, GPU tests, bench_gpu)" OFF)
option(SKILLVEC_THRUST_TESTS "Test the Thrust backend on the host (OpenMP device system)" OFF)
option(SKILLVEC_NVCC_CHECK "Compile the CUDA translation units with nvcc (no link, no GPU)" OFF)

set(SKILLVEC_CUDA_HOME "$ENV{CUDA_HOME}" CACHE PATH "CUDA toolkit (default: $CUDA_HOME, else /usr/local/cuda)")
if(NOT SKILLVEC_CUDA_HOME)
  set(SKILLVEC_CUDA_HOME /usr/local/cuda)
endif()
find_path(SKILLVEC_CCCL_INCLUDE_DIR thrust/version.h HINTS "${SKILLVEC_CUDA_HOME}/include/cccl" NO_DEFAULT_PATH)
find_program(SKILLVEC_NVCC nvcc HINTS "${SKILLVEC_CUDA_HOME}/bin" NO_DEFAULT_PATH)

# Flags every CUDA translation unit of skillvec needs: C++20, and constexpr host functions
# (std::array::operator[], std::bit_cast) callable from the SKILLVEC_HD expression nodes.
set(SKILLVEC_CUDA_FLAGS -std=c++20 --expt-relaxed-constexpr)
set(SKILLVEC_CUDA_ARCH sm_90 CACHE STRING "GPU architecture of the nvcc compile-only check")

if(SKILLVEC_CUDA)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  if(NOT CMAKE_CUDA_COMPILER AND SKILLVEC_NVCC)
    set(CMAKE_CUDA_COMPILER "${SKILLVEC_NVCC}")
  endif()
  enable_language(CUDA)
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  # A CUDA target of skillvec's own: the library, CCCL, the flags, and -march=native for host code.
  function(skillvec_cuda_target target)
    target_include_directories(${target} SYSTEM PRIVATE "${SKILLVEC_CCCL_INCLUDE_DIR}")
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr>)
    if(SKILLVEC_NATIVE)
      target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-march=native>)
    endif()
  endfunction()
endif()

if(SKILLVEC_NVCC_CHECK)
  if(NOT SKILLVEC_NVCC OR NOT SKILLVEC_CCCL_INCLUDE_DIR)
    message(FATAL_ERROR "SKILLVEC_NVCC_CHECK: nvcc or CCCL not found under ${SKILLVEC_CUDA_HOME} (set SKILLVEC_CUDA_HOME)")
  endif()
  # skillvec_nvcc_check(<source> [<definitions>...]): compile <source> as CUDA for SKILLVEC_CUDA_ARCH.
  set(_skillvec_nvcc_objects "")
  function(skillvec_nvcc_check source)
    get_filename_component(_name "${source}" NAME_WE)
    set(_obj "${PROJECT_BINARY_DIR}/nvcc_check/${_name}.o")
    set(_defs "")
    foreach(d IN LISTS ARGN)
      list(APPEND _defs "-D${d}")
    endforeach()
    add_custom_command(OUTPUT "${_obj}"
      COMMAND "${SKILLVEC_NVCC}" ${SKILLVEC_CUDA_FLAGS} -arch=${SKILLVEC_CUDA_ARCH} -x cu -c "${source}" -o "${_obj}"
              "-I${PROJECT_SOURCE_DIR}/include" -isystem "${SKILLVEC_CCCL_INCLUDE_DIR}" ${_defs}
      DEPENDS "${source}" IMPLICIT_DEPENDS CXX "${source}"
      COMMENT "nvcc ${SKILLVEC_CUDA_ARCH} (compile only): ${source}"
      VERBATIM)
    set(_skillvec_nvcc_objects ${_skillvec_nvcc_objects} "${_obj}" PARENT_SCOPE)
  endfunction()
  file(MAKE_DIRECTORY "${PROJECT_BINARY_DIR}/nvcc_check")
  # The command (both backends, every CLI expression, reductions) and the benchmark (device_store,
  # cuda_upload.cuh). tests/thrust/test_thrust.cu runs the same functors and would add ~4 minutes
  # of nvcc on 2 cores; it is built by SKILLVEC_CUDA=ON (scripts/dev.sh bench-gpu) instead.
  skillvec_nvcc_check("${PROJECT_SOURCE_DIR}/examples/skillvec/main.cu")
  skillvec_nvcc_check("${PROJECT_SOURCE_DIR}/benchmarks/bench_gpu.cu")
  add_custom_target(skillvec_nvcc_check ALL DEPENDS ${_skillvec_nvcc_objects})
endif()
