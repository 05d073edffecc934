#pragma once
// `skillvec merge RECIPE.yaml --out DIR [--dry-run]`: its own translation unit, because every
// method is instantiated for every model count (recipe/run.hpp), which is the slowest code here to
// compile; the rest of the command builds beside it.

#include <skillvec/io/safetensors_writer.hpp>

#include <string>

namespace skillvec::cli {

struct merge_command {
    std::string recipe;                  ///< the recipe file
    std::string out;                     ///< output checkpoint (ignored with dry_run)
    bool dry_run = false;                ///< print the resolved per-tensor plan; read no tensor data, write nothing
    bool quiet = false;
    unsigned threads = 0;
    std::string version;                 ///< recorded in the output's __metadata__
    safetensors_writer_options writer;   ///< shard size and overwrite; metadata and side files are added
};

/// Runs the command; returns the exit code. Errors are thrown (recipe_error, safetensors_error, ...).
int run_merge_command(const merge_command& c);

} // namespace skillvec::cli
