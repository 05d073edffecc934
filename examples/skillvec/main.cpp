// skillvec: the command-line tool. Parametric Skill Transfer and delta analysis on Hugging Face
// safetensors checkpoints, streamed with bounded memory.
//
//   skillvec past    --rl R --sft S --target T [--target T2 ...] --out O [--out O2 ...] [--lambda 1]
//   skillvec extract --rl R --sft S --out V[.safetensors]
//   skillvec inject  --target T --vector V --out O [--lambda 1]
//   skillvec analyze --a-minus A0 --a A --b-minus B0 --b B [--json F] [--svg F]
//   skillvec inspect PATH
//
// Exit status 0 on success; otherwise 1 with the error on stderr (its first line says what went
// wrong; a binding error lists every problem on the lines after it), or 2 for bad arguments.
#include "names.hpp"
#include "progress.hpp"

#include <skillvec/analysis/heatmap.hpp>
#include <skillvec/io/safetensors.hpp>
#include <skillvec/io/safetensors_writer.hpp>
#include <skillvec/skillvec.hpp>

#if SKILLVEC_CLI_GPU // a CUDA build (-DSKILLVEC_CUDA=ON): this file is compiled by nvcc, with --device gpu
#include <skillvec/gpu.hpp>
#endif

#include "merge.hpp"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sv = skillvec;
namespace fs = std::filesystem;

namespace {

struct options {
    unsigned threads = 0;
    bool quiet = false;
    bool force = false;
    bool mixed = false;
    std::string max_shard = "5GB";
    std::string dtype = "keep";
    double lambda = 1.0;
    std::string device = "cpu";
};

/// Calls run(backend) with the backend --device names: the CPU (xsimd), or the GPU (Thrust on
/// CUDA) in a build with CUDA.
template <class F> int on_device(const options& o, F&& run) {
    if (o.device == "gpu") {
#if SKILLVEC_CLI_GPU
        return run(sv::gpu);
#else
        throw sv::error("--device gpu: this skillvec was built without CUDA (rebuild with cmake -DSKILLVEC_CUDA=ON)");
#endif
    }
    return run(sv::cpu_backend{.threads = o.threads});
}

/// "5GB", "500MB", "2GiB", "1000000" -> bytes.
std::uint64_t parse_size(const std::string& s) {
    std::size_t pos = 0;
    double v = 0;
    try {
        v = std::stod(s, &pos);
    } catch (...) {
        throw sv::error("--max-shard-size '" + s + "' is not a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB)");
    }
    std::string unit = s.substr(pos);
    for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    const std::map<std::string, double> units = {{"", 1},      {"B", 1},         {"KB", 1e3},          {"MB", 1e6},
                                                  {"GB", 1e9}, {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}};
    const auto it = units.find(unit);
    if (it == units.end() || !(v > 0) || !std::isfinite(v))
        throw sv::error("--max-shard-size '" + s + "': use a positive number and B, KB, MB, GB, KiB, MiB or GiB");
    return static_cast<std::uint64_t>(v * it->second);
}

std::optional<sv::dtype> parse_out_dtype(const std::string& s) {
    if (s == "keep") return std::nullopt;
    const auto d = sv::parse_dtype(s);
    if (!d || !sv::is_arithmetic(*d)) throw sv::error("--dtype '" + s + "': use keep, f32, bf16, f16 or f64");
    return d;
}

std::string version() {
    return std::to_string(SKILLVEC_VERSION_MAJOR) + "." + std::to_string(SKILLVEC_VERSION_MINOR) + "." +
           std::to_string(SKILLVEC_VERSION_PATCH);
}

std::string format_float(double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", x);
    return buf;
}

/// __metadata__ recording how an output was made.
std::map<std::string, std::string> provenance(const std::string& recipe, const std::map<std::string, std::string>& inputs,
                                              std::optional<double> lambda) {
    nlohmann::json in(inputs);
    std::map<std::string, std::string> m = {{"skillvec_version", version()}, {"skillvec_recipe", recipe}, {"skillvec_inputs", in.dump()}};
    if (lambda) m["skillvec_lambda"] = format_float(*lambda);
    return m;
}

sv::safetensors_writer_options writer_options(const options& o, std::map<std::string, std::string> meta,
                                              std::optional<fs::path> copy_from) {
    return {.max_shard_bytes = parse_size(o.max_shard), .metadata = std::move(meta), .copy_files_from = std::move(copy_from),
            .overwrite = o.force};
}

/// Where an output path really points: absolute, through symlinks, no trailing '/' ("out/" is "out").
fs::path output_key(const std::string& s) {
    std::error_code ec;
    auto p = fs::weakly_canonical(fs::absolute(s), ec);
    if (ec) p = fs::absolute(s).lexically_normal();
    if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
    return p;
}

/// Refuses, before any input is read, outputs that exist (without --force) or that repeat.
void check_outputs(const options& o, const std::vector<std::string>& outs) {
    for (std::size_t i = 0; i < outs.size(); ++i) {
        std::error_code ec;
        if (!o.force && fs::exists(outs[i], ec)) throw sv::error(outs[i] + ": already exists; pass --force to replace it");
        for (std::size_t j = 0; j < i; ++j)
            if (output_key(outs[i]) == output_key(outs[j]))
                throw sv::error(outs[i] + ": given twice as an output");
    }
}

/// An operand's label in error messages: its role and its path, as "--rl ckpt/rl".
std::string role(const std::string& name, const std::string& path) { return "--" + name + " " + path; }

double plan_bytes(const std::vector<sv::tensor_info>& plan) {
    double b = 0;
    for (const auto& t : plan) b += static_cast<double>(t.nbytes());
    return b;
}

void summary(const options& o, const std::string& what, double bytes, double seconds) {
    if (o.quiet) return;
    std::fprintf(stderr, "skillvec: %s: %s in %.2f s (%s/s)\n", what.c_str(), sv::cli::human_bytes(bytes).c_str(), seconds,
                 sv::cli::human_bytes(seconds > 0 ? bytes / seconds : 0).c_str());
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --- past ------------------------------------------------------------------------------------------

template <class Backend>
int cmd_past(const options& o, const Backend& be, const std::string& rl_path, const std::string& sft_path, const std::vector<std::string>& target_paths,
             const std::vector<std::string>& out_paths, const std::string& save_vector) {
    if (target_paths.size() != out_paths.size())
        throw sv::error("past: " + std::to_string(target_paths.size()) + " --target but " + std::to_string(out_paths.size()) +
                        " --out: give one output per target, in the same order");
    auto all_outs = out_paths;
    if (!save_vector.empty()) all_outs.push_back(save_vector);
    check_outputs(o, all_outs);
    const auto t0 = std::chrono::steady_clock::now();
    const auto rl = sv::safetensors_store::open(rl_path);
    const auto sft = sv::safetensors_store::open(sft_path);
    std::vector<sv::safetensors_store> targets;
    targets.reserve(target_paths.size()); // expressions refer to the elements: no reallocation after this
    for (const auto& p : target_paths) targets.push_back(sv::safetensors_store::open(p));

    const float lambda = static_cast<float>(o.lambda);
    const sv::eval_options opt{.out_dtype = parse_out_dtype(o.dtype), .allow_mixed_float_dtypes = o.mixed};
    // Bind every target first: any mismatch in any of them stops the run before it writes anything.
    using E = decltype(sv::past(sv::weights(targets[0]), sv::weights(rl), sv::weights(sft), lambda));
    std::vector<decltype(sv::prepare(std::declval<const E&>(), be, opt))> jobs;
    for (std::size_t i = 0; i < targets.size(); ++i)
        jobs.push_back(sv::prepare(sv::past(sv::weights(targets[i], role("target", target_paths[i])), sv::weights(rl, role("rl", rl_path)),
                                            sv::weights(sft, role("sft", sft_path)), lambda),
                                   be, opt));
    using V = decltype(sv::extract(sv::weights(rl), sv::weights(sft)));
    std::optional<decltype(sv::prepare(std::declval<const V&>(), be, opt))> vector_job;
    if (!save_vector.empty())
        vector_job.emplace(sv::prepare(sv::extract(sv::weights(rl, role("rl", rl_path)), sv::weights(sft, role("sft", sft_path))), be,
                                       sv::eval_options{.allow_mixed_float_dtypes = o.mixed}));

    sv::cli::install_interrupt_handler(); // before the first temporary output exists
    std::vector<std::unique_ptr<sv::safetensors_writer>> writers;
    double total = 0;
    std::size_t tensors = 0;
    for (std::size_t i = 0; i < jobs.size(); ++i) {
        const auto meta = provenance(sv::describe(sv::past(sv::weights(targets[i], "target"), sv::weights(rl, "rl"), sv::weights(sft, "sft"), lambda)),
                                     {{"target", target_paths[i]}, {"rl", rl_path}, {"sft", sft_path}}, o.lambda);
        writers.push_back(std::make_unique<sv::safetensors_writer>(out_paths[i], writer_options(o, meta, targets[i].directory())));
        const auto plan = jobs[i].outputs();
        writers.back()->begin(plan);
        total += plan_bytes(plan);
        tensors += plan.size();
    }
    std::unique_ptr<sv::safetensors_writer> vector_writer;
    if (vector_job) {
        vector_writer = std::make_unique<sv::safetensors_writer>(
            save_vector, writer_options(o, provenance("rl - sft", {{"rl", rl_path}, {"sft", sft_path}}, std::nullopt), std::nullopt));
        const auto plan = vector_job->outputs();
        vector_writer->begin(plan);
        total += plan_bytes(plan);
        tensors += plan.size();
    }

    // Tensor by tensor, every target: rl and sft are read once per tensor, not once per target.
    sv::cli::progress bar(tensors, total, !o.quiet);
    std::vector<std::unordered_map<std::string, std::size_t>> index(jobs.size());
    for (std::size_t i = 0; i < jobs.size(); ++i)
        for (std::size_t j = 0; j < jobs[i].tensor_count(); ++j) index[i][jobs[i].tensor_name(j)] = j;
    std::vector<sv::evaluation_report> reps(jobs.size());
    sv::evaluation_report vrep;
    for (std::size_t j = 0; j < jobs[0].tensor_count(); ++j) {
        const std::string& name = jobs[0].tensor_name(j);
        if (vector_job) vector_job->run_tensor(j, sv::cli::progress_sink(*vector_writer, bar), vrep);
        for (std::size_t i = 0; i < jobs.size(); ++i)
            jobs[i].run_tensor(index[i].at(name), sv::cli::progress_sink(*writers[i], bar), reps[i]);
    }
    // All outputs are sealed (synced, complete, still hidden) before any is put in place, so a
    // failure or a kill during the slow part leaves none of them.
    for (auto& w : writers) w->seal();
    if (vector_writer) vector_writer->seal();
    if (sv::cli::interrupted().load()) throw sv::error("interrupted");
    for (auto& w : writers) w->publish();
    if (vector_writer) vector_writer->publish();
    bar.clear();
    for (std::size_t i = 0; i < jobs.size(); ++i)
        if (!o.quiet && !reps[i].passed_through.empty())
            std::fprintf(stderr, "skillvec: %s: %zu non-float tensor%s copied unchanged from the target\n", out_paths[i].c_str(),
                         reps[i].passed_through.size(), reps[i].passed_through.size() == 1 ? "" : "s");
    summary(o, "wrote " + std::to_string(jobs.size()) + (jobs.size() == 1 ? " checkpoint" : " checkpoints") +
                   (vector_writer ? " and the skill vector" : ""),
            total, seconds_since(t0));
    return 0;
}

// --- extract / inject --------------------------------------------------------------------------------

template <class Job> void run_into(const options& o, const Job& job, sv::safetensors_writer& w) {
    const auto plan = job.outputs();
    sv::cli::progress bar(plan.size(), plan_bytes(plan), !o.quiet);
    job.run(sv::cli::progress_sink(w, bar));
}

template <class Backend>
int cmd_extract(const options& o, const Backend& be, const std::string& rl_path, const std::string& sft_path, const std::string& out) {
    check_outputs(o, {out});
    const auto t0 = std::chrono::steady_clock::now();
    const auto rl = sv::safetensors_store::open(rl_path);
    const auto sft = sv::safetensors_store::open(sft_path);
    const auto e = sv::extract(sv::weights(rl, role("rl", rl_path)), sv::weights(sft, role("sft", sft_path)));
    const auto dt = o.dtype == "keep" ? std::optional<sv::dtype>(sv::dtype::f32) : parse_out_dtype(o.dtype);
    const auto job = sv::prepare(e, be, sv::eval_options{.out_dtype = dt, .allow_mixed_float_dtypes = o.mixed});
    sv::cli::install_interrupt_handler();
    sv::safetensors_writer w(out, writer_options(o, provenance(sv::describe(sv::extract(sv::weights(rl, "rl"), sv::weights(sft, "sft"))), {{"rl", rl_path}, {"sft", sft_path}}, std::nullopt), std::nullopt));
    run_into(o, job, w);
    summary(o, "wrote the skill vector", plan_bytes(job.outputs()), seconds_since(t0));
    return 0;
}

template <class Backend>
int cmd_inject(const options& o, const Backend& be, const std::string& target_path, const std::string& vector_path, const std::string& out) {
    check_outputs(o, {out});
    const auto t0 = std::chrono::steady_clock::now();
    const auto target = sv::safetensors_store::open(target_path);
    const auto v = sv::safetensors_store::open(vector_path);
    const auto e = sv::inject(sv::weights(target, role("target", target_path)), sv::delta(v, role("vector", vector_path)), static_cast<float>(o.lambda));
    // A saved vector is usually f32 and the model bf16: mixing float kinds is the point here.
    const auto job = sv::prepare(e, be, sv::eval_options{.out_dtype = parse_out_dtype(o.dtype), .allow_mixed_float_dtypes = true});
    sv::cli::install_interrupt_handler();
    sv::safetensors_writer w(out, writer_options(o, provenance(sv::describe(sv::inject(sv::weights(target, "target"), sv::delta(v, "vector"), static_cast<float>(o.lambda))),
                                                 {{"target", target_path}, {"vector", vector_path}}, o.lambda),
                                                 target.directory()));
    run_into(o, job, w);
    summary(o, "wrote the checkpoint", plan_bytes(job.outputs()), seconds_since(t0));
    return 0;
}

// --- analyze -------------------------------------------------------------------------------------------

nlohmann::json number(double x) { return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr); }

nlohmann::json stats_json(const sv::compare_stats& s) {
    return {{"numel", s.numel},           {"cosine", number(s.cosine())},         {"norm_a", number(s.norm_a())},
            {"norm_b", number(s.norm_b())}, {"sparsity_a", number(s.sparsity_a())}, {"sparsity_b", number(s.sparsity_b())}};
}

/// Writes a text file atomically: a temporary name beside it, renamed when complete.
void write_atomically(const fs::path& path, const std::string& text) {
    const fs::path tmp = path.string() + ".skillvec-tmp";
    {
        std::ofstream f(tmp, std::ios::binary);
        if (!f) throw sv::error(path.string() + ": cannot write");
        f << text;
        f.flush();
        if (!f) {
            f.close();
            fs::remove(tmp);
            throw sv::error(path.string() + ": write failed (disk full?)");
        }
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) {
        fs::remove(tmp, ec);
        throw sv::error(path.string() + ": cannot rename into place");
    }
}

template <class Backend>
int cmd_analyze(const options& o, const Backend& be, const std::string& a0, const std::string& a, const std::string& b0, const std::string& b,
                const std::string& json_path, const std::string& svg_path, double tol) {
    const auto A0 = sv::safetensors_store::open(a0), A = sv::safetensors_store::open(a);
    const auto B0 = sv::safetensors_store::open(b0), B = sv::safetensors_store::open(b);
    const auto e = sv::compare(sv::weights(A, role("a", a)) - sv::weights(A0, role("a-minus", a0)),
                               sv::weights(B, role("b", b)) - sv::weights(B0, role("b-minus", b0)),
                               static_cast<float>(tol));
    const auto job = sv::prepare(e, be, sv::eval_options{.allow_mixed_float_dtypes = o.mixed});
    double in_bytes = 0; // float tensors of the four checkpoints: what the pass reads
    for (const auto* st : {&A0, &A, &B0, &B})
        for (const auto& n : st->tensor_names())
            if (const auto v = st->find(n); v && sv::is_arithmetic(v->type)) in_bytes += static_cast<double>(v->bytes.size());
    sv::cli::install_interrupt_handler();
    sv::cli::progress bar(job.tensor_count(), in_bytes, !o.quiet);
    const auto res = job.run([&](const sv::tensor_info&, std::uint64_t read) { bar.advance(static_cast<double>(read)); });
    bar.clear();

    std::printf("%-10s %8s %14s %12s %12s %11s %11s\n", "layer", "tensors", "cos(a, b)", "|a|", "|b|", "sparsity a", "sparsity b");
    for (const auto& l : res.layers)
        std::printf("%-10s %8zu %+14.6f %12.5g %12.5g %11.4f %11.4f\n", l.layer == sv::no_layer ? "other" : std::to_string(l.layer).c_str(),
                    l.tensors, l.stats.cosine(), l.stats.norm_a(), l.stats.norm_b(), l.stats.sparsity_a(), l.stats.sparsity_b());
    std::printf("%-10s %8zu %+14.6f %12.5g %12.5g %11.4f %11.4f\n", "global", res.tensors.size(), res.global.cosine(), res.global.norm_a(),
                res.global.norm_b(), res.global.sparsity_a(), res.global.sparsity_b());
    if (!res.skipped.empty()) std::printf("(%zu non-float tensor%s skipped)\n", res.skipped.size(), res.skipped.size() == 1 ? "" : "s");

    if (!json_path.empty()) {
        nlohmann::ordered_json j;
        j["skillvec_version"] = version();
        j["a"] = {{"minus", a0}, {"plus", a}};
        j["b"] = {{"minus", b0}, {"plus", b}};
        j["sparsity_tolerance"] = tol;
        j["tensors"] = nlohmann::json::array();
        for (const auto& t : res.tensors) {
            nlohmann::ordered_json r = {{"name", t.name}, {"layer", t.layer == sv::no_layer ? nlohmann::json(nullptr) : nlohmann::json(t.layer)},
                                        {"module", sv::module_of(t.name)}};
            const auto stats = stats_json(t.stats); // items() must not outlive the object it walks
            for (const auto& [k, v] : stats.items()) r[k] = v;
            j["tensors"].push_back(r);
        }
        j["layers"] = nlohmann::json::array();
        for (const auto& l : res.layers) {
            nlohmann::ordered_json r = {{"layer", l.layer == sv::no_layer ? nlohmann::json(nullptr) : nlohmann::json(l.layer)}, {"tensors", l.tensors}};
            const auto stats = stats_json(l.stats);
            for (const auto& [k, v] : stats.items()) r[k] = v;
            j["layers"].push_back(r);
        }
        j["global"] = stats_json(res.global);
        j["skipped"] = res.skipped;
        write_atomically(json_path, j.dump(2) + "\n");
    }
    if (!svg_path.empty()) {
        const auto grid = sv::layer_module_grid(res, [](const sv::compare_stats& s) { return s.cosine(); });
        write_atomically(svg_path, sv::render_heatmap_svg(grid, "cos(a, b) by layer and module",
                                                          "a = " + a + " - " + a0 + ";  b = " + b + " - " + b0));
    }
    return 0;
}

// --- inspect ----------------------------------------------------------------------------------------------

/// Text from a file, for the terminal: control characters (an escape sequence in a hostile file)
/// shown as \xNN. With an `indent` (a metadata value), newlines are kept and continuation lines
/// indented by it, and trailing newlines dropped; without one (a tensor name), newlines are escaped.
std::string printable(std::string_view v, std::size_t indent = std::string::npos) {
    const bool lines = indent != std::string::npos;
    while (lines && !v.empty() && v.back() == '\n') v.remove_suffix(1);
    std::string out;
    for (const char c : v) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '\n' && lines) {
            out += '\n';
            out.append(indent, ' ');
        } else if ((u < 0x20 && c != '\t') || u == 0x7f) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\x%02x", u);
            out += buf;
        } else {
            out += c;
        }
    }
    return out;
}

int cmd_inspect(const std::string& path) {
    const auto s = sv::safetensors_store::open(path); // validates
    std::map<std::string, std::pair<std::size_t, std::uint64_t>> by_dtype;
    for (const auto& n : s.tensor_names()) {
        const auto v = *s.find(n);
        auto& d = by_dtype[std::string(sv::name_of(v.type))];
        ++d.first;
        d.second += v.bytes.size();
    }
    const auto files = s.files();
    std::printf("%s: valid, %zu tensors, %s in %zu file%s\n", path.c_str(), s.tensor_names().size(),
                sv::cli::human_bytes(static_cast<double>(s.tensor_bytes())).c_str(), files.size(), files.size() == 1 ? "" : "s");
    for (const auto& [dt, c] : by_dtype)
        std::printf("  %-8s %6zu tensor%s %12s\n", dt.c_str(), c.first, c.first == 1 ? " " : "s",
                    sv::cli::human_bytes(static_cast<double>(c.second)).c_str());
    for (const auto& [k, v] : s.metadata()) {
        const std::string key = printable(k);
        std::printf("  metadata %s = %s\n", key.c_str(), printable(v, 14 + key.size()).c_str());
    }
    auto names = s.tensor_names();
    std::sort(names.begin(), names.end(), sv::cli::natural_less);
    std::size_t width = 6;
    for (const auto& n : names) width = std::max(width, printable(n).size());
    const bool sharded = files.size() > 1;
    std::printf("\n%-*s %-5s %-18s %10s%s\n", static_cast<int>(width), "tensor", "dtype", "shape", "size", sharded ? "  file" : "");
    for (const auto& n : names) {
        const auto v = *s.find(n);
        std::printf("%-*s %-5s %-18s %10s", static_cast<int>(width), printable(n).c_str(), std::string(sv::name_of(v.type)).c_str(),
                    v.dims.to_string().c_str(), sv::cli::human_bytes(static_cast<double>(v.bytes.size())).c_str());
        if (sharded) std::printf("  %s", fs::path(s.file_of(n)).filename().c_str());
        std::printf("\n");
    }
    return 0;
}

/// Prints an error: "skillvec: error: <first line>", and any further lines indented.
int report_error(const std::string& what) {
    std::string first = what, rest;
    if (const auto nl = what.find('\n'); nl != std::string::npos) {
        first = what.substr(0, nl);
        rest = what.substr(nl + 1);
    }
    std::fprintf(stderr, "skillvec: error: %s\n", first.c_str());
    // Further lines (a binding error lists every problem): at most 30 of them.
    std::size_t shown = 0, pos = 0;
    while (pos < rest.size()) {
        const auto nl = rest.find('\n', pos);
        const auto line = rest.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        pos = nl == std::string::npos ? rest.size() : nl + 1;
        if (shown < 30) std::fprintf(stderr, "%s\n", line.c_str());
        ++shown;
    }
    if (shown > 30) std::fprintf(stderr, "  ... and %zu more\n", shown - 30);
    return 1;
}

} // namespace

int main(int argc, char** argv) {
    CLI::App app{"skillvec " + version() + ": Parametric Skill Transfer and weight arithmetic on safetensors checkpoints"};
    app.require_subcommand(1);
    // The build's arithmetic, for reproducing results elsewhere: t + λ·v rounds once with an FMA.
    app.set_version_flag("--version", "skillvec " + version() + " (simd: " + std::string(xsimd::default_arch::name()) +
                                          ", fma: " + (sv::has_hardware_fma ? "yes" : "no") + ")");
    options o;
    auto add_common = [&](CLI::App* c, bool writes) {
        c->add_option("--threads", o.threads, "threads to use (default: all)");
        c->add_flag("--quiet,-q", o.quiet, "no progress line or summary");
        c->add_flag("--allow-mixed-dtypes", o.mixed, "compute across float kinds (e.g. an f32 sft with a bf16 rl)");
        c->add_option("--device", o.device, "where to compute: cpu, or gpu (a CUDA build)")
            ->check(CLI::IsMember({"cpu", "gpu"}))
            ->capture_default_str();
        if (writes) {
            c->add_flag("--force", o.force, "replace existing outputs (only once the new ones are complete)");
            c->add_option("--max-shard-size", o.max_shard, "largest output shard, e.g. 5GB, 500MiB")->capture_default_str();
        }
    };

    std::string rl, sft, save_vector;
    std::vector<std::string> targets, outs;
    auto* past = app.add_subcommand("past", "apply the skill vector rl - sft to one or more targets: out = target + lambda * (rl - sft)");
    past->add_option("--rl", rl, "checkpoint after RL on the source domain")->required();
    past->add_option("--sft", sft, "checkpoint RL started from (SFT on the source domain)")->required();
    past->add_option("--target", targets, "checkpoint SFT-ed on the target domain (repeatable)")->required();
    past->add_option("--out", outs, "output checkpoint directory, one per --target, in order")->required();
    past->add_option("--lambda", o.lambda, "scale of the skill vector")->capture_default_str();
    past->add_option("--dtype", o.dtype, "output dtype: keep (the target's), f32, bf16, f16")->capture_default_str();
    past->add_option("--save-vector", save_vector, "also write the skill vector (f32) here");
    add_common(past, true);

    std::string extract_out;
    auto* extract = app.add_subcommand("extract", "save the skill vector rl - sft as safetensors (f32 unless --dtype)");
    extract->add_option("--rl", rl, "checkpoint after RL")->required();
    extract->add_option("--sft", sft, "checkpoint before RL")->required();
    extract->add_option("--out", extract_out, "output: a directory, or one file if it ends in .safetensors")->required();
    extract->add_option("--dtype", o.dtype, "vector dtype: f32 (keep means f32 here), bf16, f16, f64");
    add_common(extract, true);

    std::string target, vec, inject_out;
    auto* inject = app.add_subcommand("inject", "add a saved vector to a checkpoint: out = target + lambda * vector");
    inject->add_option("--target", target, "checkpoint to move")->required();
    inject->add_option("--vector", vec, "saved vector (file or directory)")->required();
    inject->add_option("--out", inject_out, "output checkpoint directory")->required();
    inject->add_option("--lambda", o.lambda, "scale of the vector")->capture_default_str();
    inject->add_option("--dtype", o.dtype, "output dtype: keep (the target's), f32, bf16, f16")->capture_default_str();
    add_common(inject, true);

    std::string a0, a, b0, b, json_path, svg_path;
    double tol = 0;
    auto* analyze = app.add_subcommand("analyze", "per-tensor and per-layer cosine, norms and sparsity of two deltas a = A - A0, b = B - B0");
    analyze->add_option("--a-minus", a0, "A0")->required();
    analyze->add_option("--a", a, "A")->required();
    analyze->add_option("--b-minus", b0, "B0")->required();
    analyze->add_option("--b", b, "B")->required();
    analyze->add_option("--json", json_path, "write per-tensor, per-layer and global results as JSON");
    analyze->add_option("--svg", svg_path, "write a layers x modules heatmap of the cosine");
    analyze->add_option("--tol", tol, "sparsity counts |x| <= tol")->capture_default_str();
    add_common(analyze, false);

    sv::cli::merge_command mc;
    auto* merge = app.add_subcommand("merge", "merge checkpoints as a recipe file says (mergekit-style YAML; docs/recipes.md)");
    merge->add_option("recipe", mc.recipe, "the recipe file")->required();
    merge->add_option("--out", mc.out, "output checkpoint directory");
    merge->add_flag("--dry-run", mc.dry_run, "print the resolved per-tensor plan; read no tensor data, write nothing");
    merge->add_option("--threads", o.threads, "threads to use (default: all)");
    merge->add_flag("--quiet,-q", o.quiet, "no progress line or summary");
    merge->add_flag("--force", o.force, "replace an existing output (only once the new one is complete)");
    merge->add_option("--max-shard-size", o.max_shard, "largest output shard, e.g. 5GB, 500MiB")->capture_default_str();

    std::string inspect_path;
    auto* inspect = app.add_subcommand("inspect", "validate a checkpoint and list its tensors");
    inspect->add_option("path", inspect_path, "a .safetensors file or a checkpoint directory")->required();

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        if (e.get_exit_code() == 0) return app.exit(e); // --help, --version
        std::fprintf(stderr, "skillvec: error: %s (see skillvec --help)\n", e.what());
        return 2;
    }
    if (!std::isfinite(static_cast<float>(o.lambda))) // a value error, like a bad --dtype: exit 1
        return report_error("--lambda " + format_float(o.lambda) + ": use a finite number (it is applied in f32)");
    try {
        if (*past) return on_device(o, [&](const auto& be) { return cmd_past(o, be, rl, sft, targets, outs, save_vector); });
        if (*extract) return on_device(o, [&](const auto& be) { return cmd_extract(o, be, rl, sft, extract_out); });
        if (*inject) return on_device(o, [&](const auto& be) { return cmd_inject(o, be, target, vec, inject_out); });
        if (*analyze) return on_device(o, [&](const auto& be) { return cmd_analyze(o, be, a0, a, b0, b, json_path, svg_path, tol); });
        if (*inspect) return cmd_inspect(inspect_path);
        if (*merge) {
            if (!mc.dry_run) {
                if (mc.out.empty()) { // a missing option, as CLI11 reports for the other commands: exit 2
                    std::fprintf(stderr, "skillvec: error: merge: --out is required (or --dry-run to only print the plan) (see skillvec --help)\n");
                    return 2;
                }
                check_outputs(o, {mc.out});
            }
            mc.quiet = o.quiet;
            mc.threads = o.threads;
            mc.version = version();
            mc.writer = writer_options(o, {}, std::nullopt);
#if defined(SKILLVEC_CLI_MERGE)
            return sv::cli::run_merge_command(mc);
#else
            return report_error("merge: this skillvec was built without yaml-cpp (apt-get install -y libyaml-cpp-dev, then rebuild)");
#endif
        }
    } catch (const sv::binding_error& e) {
        // The first line names the first problem's tensor and checkpoints; the rest list them all.
        // The library's dtype hint names its option; here it is a flag.
        const auto cli_words = [](std::string t) {
            for (std::size_t at; (at = t.find("set allow_mixed_float_dtypes")) != std::string::npos;)
                t.replace(at, 28, "pass --allow-mixed-dtypes");
            return t;
        };
        const std::string what = cli_words(e.what());
        const auto nl = what.find('\n');
        const auto& p = e.problems();
        const std::string first = p.empty() ? what.substr(0, nl)
                                            : "checkpoints disagree (" + std::to_string(p.size()) + (p.size() == 1 ? " problem): " : " problems): ") +
                                                  cli_words(p.front().message);
        return report_error(first + (nl == std::string::npos ? "" : what.substr(nl)));
    } catch (const std::exception& e) {
        return report_error(e.what());
    }
    return 0;
}
