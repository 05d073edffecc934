// skillvec merge: a recipe file, validated, planned per tensor, then one streaming pass.
#include "merge.hpp"
#include "names.hpp"

#include "progress.hpp"

#include <skillvec/recipe/run.hpp>
#include <skillvec/recipe/yaml.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace skillvec::cli {

namespace {
std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string dims_text(const shape& d) { return d.to_string(); }
} // namespace

int run_merge_command(const merge_command& c) {
    const auto t0 = std::chrono::steady_clock::now();
    recipe::recipe_spec spec = recipe::load_recipe(c.recipe);
    const cpu_backend be{.threads = c.threads};
    const recipe::merge_job job(std::move(spec), be);
    // Every tensor's parameters are resolved (and the models bound) before anything is written.
    auto rows = job.plan(); // in the point operand's shard order

    if (c.dry_run) {
        std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return natural_less(a.tensor, b.tensor); });
        std::size_t width = 6;
        for (const auto& r : rows) width = std::max(width, r.tensor.size());
        std::size_t merged = 0, kept = 0, copied = 0;
        for (const auto& r : rows) (r.action == "merge" ? merged : r.action == "keep" ? kept : copied)++;
        std::printf("recipe: %s\nmethod: %s\nformula: %s\nlayers: %d\ntensors: %zu (%zu merged, %zu kept, %zu copied)\n\n",
                    c.recipe.c_str(), job.spec().method.c_str(), job.formula().c_str(), job.num_layers(), rows.size(), merged, kept,
                    copied);
        std::printf("%-*s  %-14s  %-11s  %-6s  %s\n", static_cast<int>(width), "tensor", "shape", "dtype", "action", "parameters");
        for (const auto& r : rows) {
            const std::string dt = std::string(name_of(r.in)) + "->" + std::string(name_of(r.out));
            std::printf("%-*s  %-14s  %-11s  %-6s  %s\n", static_cast<int>(width), r.tensor.c_str(), dims_text(r.dims).c_str(), dt.c_str(),
                        r.action.c_str(), r.detail.c_str());
        }
        return 0;
    }

    nlohmann::json inputs = nlohmann::json::object();
    const auto& s = job.spec();
    if (s.base_model) inputs["base_model"] = s.base_model->path.string();
    for (const auto& [role, m] : s.roles) inputs[role] = m.path.string();
    for (std::size_t i = 0; i < s.models.size(); ++i) inputs["model" + std::to_string(i)] = s.models[i].path.string();
    safetensors_writer_options wo = c.writer;
    wo.metadata["skillvec_version"] = c.version;
    wo.metadata["skillvec_recipe"] = job.formula();
    wo.metadata["skillvec_method"] = s.method;
    wo.metadata["skillvec_recipe_file"] = read_text(c.recipe);
    wo.metadata["skillvec_inputs"] = inputs.dump();
    wo.copy_files_from = job.point_operand_directory();

    install_interrupt_handler(); // before the temporary output exists
    safetensors_writer w(c.out, wo);
    double bytes = 0;
    std::size_t count = 0;
    for (const auto& r : rows)
        if (r.action != "skip") {
            bytes += static_cast<double>(byte_size(r.out, r.dims.numel()));
            ++count;
        }
    progress bar(count, bytes, !c.quiet);
    const auto rep = job.run(progress_sink(w, bar));
    bar.clear();
    if (!c.quiet) {
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "skillvec: merge (%s): %zu tensors merged, %zu kept, %zu copied; %s in %.2f s\n", s.method.c_str(),
                     rep.computed.size(), rep.kept.size(), rep.passed_through.size(), human_bytes(bytes).c_str(), secs);
    }
    return 0;
}

} // namespace skillvec::cli
