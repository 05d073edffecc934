# The one place where skillvec's dependency versions are pinned and checked.
#
# Pinned: the versions skillvec is built and tested with (Debian 12 packages).
# Accepted: the same major (or 0.minor) series at or above the pin. The upper bounds are real API
# breaks: xsimd 9 renamed hadd to reduce_add and reworked batch_bool, xtensor 0.25 needs xsimd >= 11,
# Catch2 3 is a different library. This file is installed with the package and used by
# skillvecConfig.cmake, so consumers are checked the same way.

set(SKILLVEC_XSIMD_PIN     8.1.0)   # libxsimd-dev
set(SKILLVEC_XSIMD_BELOW   9)
set(SKILLVEC_XTENSOR_PIN   0.24.3)  # libxtensor-dev
set(SKILLVEC_XTENSOR_BELOW 0.25)
set(SKILLVEC_JSON_PIN      3.11.2)  # nlohmann-json3-dev (safetensors headers and indexes)
set(SKILLVEC_JSON_BELOW    4)
set(SKILLVEC_CATCH2_PIN    2.13.10) # catch2 (tests only)
set(SKILLVEC_CATCH2_BELOW  3)
set(SKILLVEC_BENCHMARK_PIN 1.7.1)   # libbenchmark-dev (benchmarks only)
set(SKILLVEC_BENCHMARK_BELOW 2)
set(SKILLVEC_CLI11_PIN     2.1.2)   # libcli11-dev (the skillvec command only)
set(SKILLVEC_CLI11_BELOW   3)
set(SKILLVEC_YAML_CPP_PIN  0.7.0)   # libyaml-cpp-dev (recipe files only; optional)
set(SKILLVEC_YAML_CPP_BELOW 0.9)

# _skillvec_check_version(<package> <found-version> <pin> <below>)
function(_skillvec_check_version pkg found pin below)
  if(found VERSION_LESS pin OR NOT found VERSION_LESS below)
    message(FATAL_ERROR
      "skillvec: ${pkg} ${found} is outside the supported range [${pin}, ${below}). "
      "On Debian 12: apt-get install -y libxtensor-dev libxsimd-dev nlohmann-json3-dev catch2 libbenchmark-dev")
  endif()
endfunction()

# The library's own dependencies (what a consumer needs): xsimd, xtensor, nlohmann_json, threads.
# In a package config (SKILLVEC_FROM_PACKAGE set) missing packages make the config fail the
# CMake way (find_dependency); in the build they are hard errors with an install hint.
macro(skillvec_find_dependencies)
  if(SKILLVEC_FROM_PACKAGE)
    include(CMakeFindDependencyMacro)
    find_dependency(xsimd ${SKILLVEC_XSIMD_PIN})
    find_dependency(xtensor ${SKILLVEC_XTENSOR_PIN})
    find_dependency(nlohmann_json ${SKILLVEC_JSON_PIN})
    find_dependency(Threads)
  else()
    find_package(xsimd ${SKILLVEC_XSIMD_PIN} REQUIRED)
    find_package(xtensor ${SKILLVEC_XTENSOR_PIN} REQUIRED)
    find_package(nlohmann_json ${SKILLVEC_JSON_PIN} REQUIRED)
    find_package(Threads REQUIRED)
  endif()
  _skillvec_check_version(xsimd "${xsimd_VERSION}" ${SKILLVEC_XSIMD_PIN} ${SKILLVEC_XSIMD_BELOW})
  _skillvec_check_version(xtensor "${xtensor_VERSION}" ${SKILLVEC_XTENSOR_PIN} ${SKILLVEC_XTENSOR_BELOW})
  _skillvec_check_version(nlohmann_json "${nlohmann_json_VERSION}" ${SKILLVEC_JSON_PIN} ${SKILLVEC_JSON_BELOW})
endmacro()

# Test-only dependency.
macro(skillvec_find_test_dependencies)
  find_package(Catch2 ${SKILLVEC_CATCH2_PIN} REQUIRED)
  _skillvec_check_version(Catch2 "${Catch2_VERSION}" ${SKILLVEC_CATCH2_PIN} ${SKILLVEC_CATCH2_BELOW})
endmacro()

# Benchmark-only dependency.
macro(skillvec_find_benchmark_dependencies)
  find_package(benchmark ${SKILLVEC_BENCHMARK_PIN} REQUIRED)
  _skillvec_check_version(benchmark "${benchmark_VERSION}" ${SKILLVEC_BENCHMARK_PIN} ${SKILLVEC_BENCHMARK_BELOW})
endmacro()

# The skillvec command's dependency.
macro(skillvec_find_tool_dependencies)
  find_package(CLI11 ${SKILLVEC_CLI11_PIN} REQUIRED)
  _skillvec_check_version(CLI11 "${CLI11_VERSION}" ${SKILLVEC_CLI11_PIN} ${SKILLVEC_CLI11_BELOW})
endmacro()

# Recipe files' optional dependency: yaml-cpp. Sets SKILLVEC_YAML_CPP_TARGET to its imported target,
# or to "" when it is missing or outside the supported range (then skillvec::recipe_yaml does not
# exist). The target's name changed: yaml-cpp 0.7 exports `yaml-cpp`, 0.8 `yaml-cpp::yaml-cpp`.
macro(skillvec_find_recipe_dependencies)
  set(SKILLVEC_YAML_CPP_TARGET "")
  find_package(yaml-cpp ${SKILLVEC_YAML_CPP_PIN} QUIET)
  if(yaml-cpp_FOUND AND yaml-cpp_VERSION VERSION_LESS SKILLVEC_YAML_CPP_BELOW)
    if(TARGET yaml-cpp::yaml-cpp)
      set(SKILLVEC_YAML_CPP_TARGET yaml-cpp::yaml-cpp)
    elseif(TARGET yaml-cpp)
      set(SKILLVEC_YAML_CPP_TARGET yaml-cpp)
    endif()
  endif()
endmacro()
