// past_demo: Parametric Skill Transfer reproduced end to end in miniature (bioS-mini).
//
//   theta0 = pretrain(P0 biographies + P0 questions)
//   sft_S  = SFT(theta0, S biographies);  rl_S = GRPO(sft_S, S questions);  v = rl_S - sft_S
//   sft_T  = SFT(theta0, T biographies);  past_T = sft_T + lambda * v
//
// and the arms around it (theta0, SFT-only, PaST at several lambdas, a random vector with v's
// per-tensor norms, GRPO directly on T, a skill vector from QA-SFT, iterative refinement with
// K = 3), closed-book exact match on T's questions, a cloze probe, per-layer cosines, and the KL
// to the base model. Writes results.json, report.md, two heatmaps and every checkpoint.
//
// usage: past_demo [--out DIR] [--seeds N] [--first-seed S] [--quick] [--dump-world]
#include "pipeline.hpp"

#include <skillvec/analysis/heatmap.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace past_demo;

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) { return std::chrono::duration<double>(clock_type::now() - t0).count(); }

/// Writes `text` to `path` through a temporary name, so a reader never sees half a file.
void write_atomically(const fs::path& path, const std::string& text) {
    const fs::path tmp = path.string() + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary);
        f << text;
        f.flush();
        if (!f) throw std::runtime_error(tmp.string() + ": write failed");
    }
    fs::rename(tmp, path);
}

/// "1.0" for an arm's lambda, "" for an arm without one (NaN).
std::string lambda_text(double lambda) { return std::isnan(lambda) ? std::string() : std::to_string(lambda).substr(0, 3); }

struct summary_stat {
    double mean = 0, sd = 0;
};
summary_stat summarize(const std::vector<double>& x) {
    summary_stat s;
    if (x.empty()) return s;
    for (double v : x) s.mean += v;
    s.mean /= static_cast<double>(x.size());
    if (x.size() > 1) {
        for (double v : x) s.sd += (v - s.mean) * (v - s.mean);
        s.sd = std::sqrt(s.sd / static_cast<double>(x.size() - 1));
    }
    return s;
}

/// One arm's measurements over the seeds.
struct arm {
    std::string name;
    double lambda = 0; // NaN: not a PaST-style arm
    std::string note;
    std::vector<double> em;                                        // per seed
    std::array<std::vector<double>, attribute_count> em_attr;      // per attribute, per seed
    std::array<std::vector<double>, attribute_count> cloze_attr;   // per attribute, per seed (if measured)
    std::vector<double> kl, p0_em;                                 // RL's Razor (if measured)
};

struct layer_cos {
    std::vector<double> sft_rl, sft_sft;
    double random_baseline = 0;
};

} // namespace

int main(int argc, char** argv) {
    fs::path out = "runs/past_demo";
    std::size_t n_seeds = 3;
    std::uint64_t first_seed = 1;
    bool quick = false, dump_world = false;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--out" && i + 1 < argc) out = argv[++i];
        else if (a == "--seeds" && i + 1 < argc) n_seeds = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--first-seed" && i + 1 < argc) first_seed = std::strtoull(argv[++i], nullptr, 10);
        else if (a == "--quick") quick = true;
        else if (a == "--dump-world") dump_world = true;
        else {
            std::fprintf(stderr, "usage: past_demo [--out DIR] [--seeds N] [--first-seed S] [--quick] [--dump-world]\n");
            return 2;
        }
    }
    if (quick) n_seeds = 1;
    if (n_seeds == 0) {
        std::fprintf(stderr, "past_demo: --seeds must be at least 1\n");
        return 2;
    }
    try {
        const auto t_start = clock_type::now();
        context c;
        c.cfg = quick ? settings::quick() : settings{};
        c.tok = nn::tokenizer::build(vocabulary_corpus());
        c.cfg.model_config.vocab = c.tok.size();
        c.say = [&](const std::string& line) {
            std::printf("[%6.1fs] %s\n", seconds_since(t_start), line.c_str());
            std::fflush(stdout);
        };
        fs::create_directories(out);
        c.tok.save(out / "tokenizer.json");
        {
            const model probe(c.cfg.model_config, 0);
            c.say("bioS-mini: P0 " + std::to_string(c.cfg.n_p0) + ", S " + std::to_string(c.cfg.n_s) + ", T " +
                  std::to_string(c.cfg.n_t) + " people x 4 attributes; vocabulary " + std::to_string(c.tok.size()) +
                  "; model " + std::to_string(probe.num_params()) + " parameters; " + std::to_string(n_seeds) + " seed(s)");
        }

        const std::vector<float> lambdas = {0.5f, 1.0f, 1.5f};
        std::vector<arm> arms;
        auto arm_at = [&](const std::string& name, double lambda, const std::string& note) -> arm& {
            for (auto& a : arms)
                if (a.name == name && (a.lambda == lambda || (std::isnan(a.lambda) && std::isnan(lambda)))) return a;
            arms.push_back(arm{name, lambda, note, {}, {}, {}, {}, {}});
            return arms.back();
        };
        const double no_lambda = std::nan("");
        std::map<int, layer_cos> layers;
        std::map<std::string, std::vector<double>> stage_seconds, diagnostics;
        skillvec::heatmap_grid grid_rl, grid_sft;

        for (std::size_t si = 0; si < n_seeds; ++si) {
            const std::uint64_t seed = first_seed + si;
            const fs::path sdir = out / ("seed-" + std::to_string(seed));
            fs::create_directories(sdir);
            auto save = [&](const model& m, const std::string& name) {
                nn::save_gpt(m, sdir / (name + ".safetensors"), {{"stage", name}, {"seed", std::to_string(seed)}}, true);
            };
            auto timed = [&](const std::string& stage, auto&& f) {
                const auto t0 = clock_type::now();
                f();
                stage_seconds[stage].push_back(seconds_since(t0));
            };
            c.say("seed " + std::to_string(seed) + " (" + std::to_string(si + 1) + "/" + std::to_string(n_seeds) + ")");
            const world w = make_world(c.cfg.n_p0, c.cfg.n_s, c.cfg.n_t, seed);
            if (dump_world) dump_jsonl(w, (sdir / "world.jsonl").string());
            nn::rng data_rng(nn::derive_seed(seed, 0x64617461 /* "data" */));
            const auto q0 = questions_for(w.p0), qs = questions_for(w.s), qt = questions_for(w.t);

            // theta0: pretraining on P0 biographies and P0 questions (the base knows the QA format).
            model theta0(c.cfg.model_config, seed);
            timed("pretrain", [&] {
                auto mix = documents(c, w.p0, data_rng);
                for (auto& s : qa_sequences(c, q0)) mix.push_back(std::move(s));
                sft(c, theta0, mix, c.cfg.pretrain_epochs, c.cfg.pretrain_lr, 0.1, seed, "pretrain");
            });
            save(theta0, "theta0");
            diagnostics["theta0_qa_em_on_P0"].push_back(exact_match(c, theta0, q0).overall);

            // Source: SFT on S documents, then GRPO on S questions.
            model sft_s(theta0);
            timed("sft_S", [&] { sft(c, sft_s, documents(c, w.s, data_rng), c.cfg.sft_epochs, c.cfg.sft_lr, 0.0, seed, "sft_S"); });
            save(sft_s, "sft_S");
            const double em_sft_s = exact_match(c, sft_s, qs).overall;
            model rl_s(sft_s);
            timed("grpo_S", [&] { grpo(c, rl_s, qs, c.cfg.rl_steps, seed, "grpo_S"); });
            save(rl_s, "rl_S");
            const double em_rl_s = exact_match(c, rl_s, qs).overall;
            diagnostics["sft_S_qa_em_on_S"].push_back(em_sft_s);
            diagnostics["rl_S_qa_em_on_S"].push_back(em_rl_s);
            c.say("  source: QA exact match on S  SFT " + std::to_string(em_sft_s) + "  -> GRPO " + std::to_string(em_rl_s));

            // Target: SFT only on T documents.
            model sft_t(theta0);
            timed("sft_T", [&] { sft(c, sft_t, documents(c, w.t, data_rng), c.cfg.sft_epochs, c.cfg.sft_lr, 0.0, seed, "sft_T"); });
            save(sft_t, "sft_T");

            auto record = [&](const std::string& name, double lambda, const std::string& note, model& m, bool probes) {
                arm& a = arm_at(name, lambda, note);
                const auto em = exact_match(c, m, qt);
                a.em.push_back(em.overall);
                for (std::size_t k = 0; k < attribute_count; ++k) a.em_attr[k].push_back(em.per_attribute[k]);
                if (probes) {
                    std::vector<question> cz;
                    for (std::size_t i = 0; i < w.t.size(); ++i)
                        for (std::size_t k = 0; k < attribute_count; ++k) cz.push_back(cloze_about(w.t[i], i, k));
                    const auto cl = exact_match(c, m, cz);
                    for (std::size_t k = 0; k < attribute_count; ++k) a.cloze_attr[k].push_back(cl.per_attribute[k]);
                    a.kl.push_back(razor_kl(c, theta0, m, qt));
                    a.p0_em.push_back(exact_match(c, m, q0).overall);
                }
                char line[160];
                std::snprintf(line, sizeof line, "  arm %-16s%s QA exact match on T %.3f", name.c_str(),
                              std::isnan(lambda) ? "       " : (" l=" + lambda_text(lambda) + " ").c_str(), em.overall);
                c.say(line);
            };
            record("theta0", no_lambda, "the pretrained base", theta0, true);
            record("sft_only", no_lambda, "SFT on T documents only", sft_t, true);
            for (float l : lambdas) {
                model p = past(sft_t, rl_s, sft_s, l);
                record("past", l, "sft_T + lambda (rl_S - sft_S)", p, l == 1.0f);
                if (l == 1.0f) save(p, "past_T");
            }
            {
                model r = random_like(sft_t, rl_s, sft_s, seed);
                record("random_vector", 1.0, "sft_T + a random vector with v's per-tensor norms", r, true);
            }
            // Upper bound: GRPO directly on T's questions.
            model rl_t(sft_t);
            timed("grpo_T", [&] { grpo(c, rl_t, qt, c.cfg.rl_steps, seed + 1000, "grpo_T"); });
            save(rl_t, "rl_T");
            record("target_grpo", no_lambda, "GRPO on T questions (upper bound)", rl_t, true);

            // Control: a skill vector from supervised QA on S instead of GRPO.
            model qa_s(sft_s);
            timed("qa_sft_S", [&] { sft(c, qa_s, qa_sequences(c, qs), c.cfg.qa_sft_epochs, c.cfg.sft_lr, 0.0, seed, "qa_sft_S"); });
            save(qa_s, "qa_sft_S");
            {
                model p = past(sft_t, qa_s, sft_s, 1.0f);
                record("qa_sft_vector", 1.0, "sft_T + (QA-SFT(sft_S) - sft_S)", p, true);
            }

            // Iterative skill refinement: K = 3 disjoint subsets of S, v refined round by round.
            timed("iterative_K3", [&] {
                const std::size_t K = 3;
                model prev_sft(theta0), prev_rl(theta0);
                for (std::size_t k = 0; k < K; ++k) {
                    std::vector<person> sub;
                    for (std::size_t i = k; i < w.s.size(); i += K) sub.push_back(w.s[i]);
                    model sft_k(theta0);
                    sft(c, sft_k, documents(c, sub, data_rng), c.cfg.sft_epochs, c.cfg.sft_lr, 0.0, seed, "sft_S" + std::to_string(k + 1));
                    model rl_k = k == 0 ? sft_k : past(sft_k, prev_rl, prev_sft, 1.0f); // start from sft_k + v_{k-1}
                    grpo(c, rl_k, questions_for(sub), c.cfg.rl_steps / K, seed + 100 * (k + 1), "grpo_S" + std::to_string(k + 1));
                    prev_sft = std::move(sft_k);
                    prev_rl = std::move(rl_k);
                }
                save(prev_sft, "sft_S3_k3");
                save(prev_rl, "rl_S3_k3"); // v_3 = rl_S3_k3 - sft_S3_k3
                model p = past(sft_t, prev_rl, prev_sft, 1.0f);
                record("past_iterative_k3", 1.0, "sft_T + v refined over K = 3 rounds", p, false);
            });

            // Orthogonality: cos(sft_S - theta0, v) against cos(sft_S - theta0, sft_T - theta0).
            using skillvec::weights;
            const auto d_sft = weights(sft_s) - weights(theta0);
            const auto cos_rl = skillvec::evaluate(skillvec::cosine(d_sft, weights(rl_s) - weights(sft_s)));
            const auto cos_sft = skillvec::evaluate(skillvec::cosine(d_sft, weights(sft_t) - weights(theta0)));
            for (const auto& l : cos_rl.layers) layers[l.layer].sft_rl.push_back(l.stats.cosine());
            for (const auto& l : cos_sft.layers) layers[l.layer].sft_sft.push_back(l.stats.cosine());
            for (const auto& l : cos_rl.layers) // two random directions in d dimensions: |cos| ~ 1/sqrt(d)
                layers[l.layer].random_baseline = 1.0 / std::sqrt(static_cast<double>(l.stats.numel));
            diagnostics["cos_sft_rl_global"].push_back(cos_rl.global.cosine());
            diagnostics["cos_sft_sft_global"].push_back(cos_sft.global.cosine());
            if (si == 0) {
                grid_rl = skillvec::layer_module_grid(cos_rl, [](const auto& s) { return s.cosine(); });
                grid_sft = skillvec::layer_module_grid(cos_sft, [](const auto& s) { return s.cosine(); });
            }
            c.say("  cos(sft_S - theta0, v) = " + std::to_string(cos_rl.global.cosine()) +
                  "   cos(sft_S - theta0, sft_T - theta0) = " + std::to_string(cos_sft.global.cosine()));
        }

        // --- results.json ------------------------------------------------------------------
        const double wall = seconds_since(t_start);
        nlohmann::json j;
        j["command"] = "past_demo --seeds " + std::to_string(n_seeds) + (quick ? " --quick" : "");
        j["seeds"] = n_seeds;
        j["first_seed"] = first_seed;
        j["wall_seconds"] = wall;
        j["world"] = {{"P0", c.cfg.n_p0}, {"S", c.cfg.n_s}, {"T", c.cfg.n_t}, {"biographies_per_person", c.cfg.bios},
                      {"attributes", attribute_names}};
        j["model"] = c.cfg.model_config.to_json();
        j["training"] = {{"pretrain_epochs", c.cfg.pretrain_epochs}, {"sft_epochs", c.cfg.sft_epochs},
                         {"rl_steps", c.cfg.rl_steps}, {"rl_lr", c.cfg.rl_lr}, {"sft_lr", c.cfg.sft_lr},
                         {"group_size", c.cfg.group_size}, {"prompts_per_step", c.cfg.prompts_per_step}};
        for (auto& a : arms) {
            nlohmann::json e;
            const summary_stat s = summarize(a.em);
            e["name"] = a.name;
            e["lambda"] = std::isnan(a.lambda) ? nlohmann::json(nullptr) : nlohmann::json(a.lambda);
            e["description"] = a.note;
            e["qa_em_mean"] = s.mean;
            e["qa_em_sd"] = s.sd;
            e["seeds"] = a.em;
            for (std::size_t k = 0; k < attribute_count; ++k) {
                const summary_stat sa = summarize(a.em_attr[k]);
                e["per_attribute"][attribute_names[k]] = {{"mean", sa.mean}, {"sd", sa.sd}};
                if (!a.cloze_attr[k].empty()) {
                    const summary_stat sc = summarize(a.cloze_attr[k]);
                    e["cloze_per_attribute"][attribute_names[k]] = {{"mean", sc.mean}, {"sd", sc.sd}};
                }
            }
            j["arms"].push_back(e);
            if (!a.kl.empty()) {
                const summary_stat k = summarize(a.kl), p = summarize(a.p0_em);
                j["razor_kl"].push_back({{"arm", a.name},
                                         {"lambda", e["lambda"]},
                                         {"kl_to_theta0_mean", k.mean},
                                         {"kl_to_theta0_sd", k.sd},
                                         {"p0_qa_em_mean", p.mean},
                                         {"p0_qa_em_sd", p.sd}});
            }
        }
        for (const auto& [layer, lc] : layers) {
            const summary_stat a = summarize(lc.sft_rl), b = summarize(lc.sft_sft);
            j["orthogonality"].push_back({{"layer", layer == skillvec::no_layer ? nlohmann::json("other") : nlohmann::json(layer)},
                                          {"cos_sft_rl", a.mean},
                                          {"cos_sft_rl_sd", a.sd},
                                          {"cos_sft_sft", b.mean},
                                          {"cos_sft_sft_sd", b.sd},
                                          {"random_baseline", lc.random_baseline}});
        }
        for (const auto& [k, v] : diagnostics) j["diagnostics"][k] = {{"mean", summarize(v).mean}, {"sd", summarize(v).sd}, {"seeds", v}};
        for (const auto& [k, v] : stage_seconds) j["stage_seconds"][k] = summarize(v).mean;
        write_atomically(out / "results.json", j.dump(2) + "\n");

        // --- heatmaps and report.md -------------------------------------------------------
        write_atomically(out / "orthogonality.svg",
                         skillvec::render_heatmap_svg(grid_rl, "cos(sft_S - theta0, v = rl_S - sft_S)",
                                                      "per layer and module, seed " + std::to_string(first_seed)));
        write_atomically(out / "orthogonality_control.svg",
                         skillvec::render_heatmap_svg(grid_sft, "cos(sft_S - theta0, sft_T - theta0)",
                                                      "per layer and module, seed " + std::to_string(first_seed)));
        std::string md;
        char buf[512];
        auto pct = [](const summary_stat& s) {
            char b[64];
            std::snprintf(b, sizeof b, "%.1f ± %.1f", 100 * s.mean, 100 * s.sd);
            return std::string(b);
        };
        md += "# PaST on bioS-mini\n\n";
        std::snprintf(buf, sizeof buf, "`%s`: %zu seed(s), %.0f s wall. Closed-book QA exact match on T (%%, mean ± sd over seeds; greedy, first answer token).\n\n",
                      j["command"].get<std::string>().c_str(), n_seeds, wall);
        md += buf;
        md += "| arm | λ | QA EM | birth_city | university | major | employer |\n|---|---|---|---|---|---|---|\n";
        for (auto& a : arms) {
            md += "| " + a.name + " | " + lambda_text(a.lambda) + " | " +
                  pct(summarize(a.em));
            for (std::size_t k = 0; k < attribute_count; ++k) md += " | " + pct(summarize(a.em_attr[k]));
            md += " |\n";
        }
        md += "\nCloze probe on T (\"<name> was born in\" → city, ...), exact match %:\n\n| arm | birth_city | university | major | employer |\n|---|---|---|---|---|\n";
        for (auto& a : arms) {
            if (a.cloze_attr[0].empty()) continue;
            md += "| " + a.name + (std::isnan(a.lambda) ? std::string("") : " λ=" + lambda_text(a.lambda));
            for (std::size_t k = 0; k < attribute_count; ++k) md += " | " + pct(summarize(a.cloze_attr[k]));
            md += " |\n";
        }
        md += "\nRL's Razor: mean KL(π_θ0 ‖ π) at the answer position over T's questions, and retained P0 QA exact match:\n\n| arm | KL to θ0 | P0 QA EM % |\n|---|---|---|\n";
        for (auto& a : arms) {
            if (a.kl.empty()) continue;
            const summary_stat k = summarize(a.kl);
            std::snprintf(buf, sizeof buf, "| %s%s | %.3f ± %.3f | %s |\n", a.name.c_str(),
                          std::isnan(a.lambda) ? "" : (" λ=" + lambda_text(a.lambda)).c_str(), k.mean, k.sd,
                          pct(summarize(a.p0_em)).c_str());
            md += buf;
        }
        md += "\nOrthogonality, per layer (mean over seeds):\n\n| layer | cos(sft_S−θ0, v) | cos(sft_S−θ0, sft_T−θ0) | random ~1/√d |\n|---|---|---|---|\n";
        for (const auto& [layer, lc] : layers) {
            std::snprintf(buf, sizeof buf, "| %s | %+.4f | %+.4f | %.4f |\n",
                          layer == skillvec::no_layer ? "other" : std::to_string(layer).c_str(), summarize(lc.sft_rl).mean,
                          summarize(lc.sft_sft).mean, lc.random_baseline);
            md += buf;
        }
        md += "\n![cos(sft_S - theta0, v)](orthogonality.svg) ![control](orthogonality_control.svg)\n\n";
        md += "Diagnostics (mean over seeds):\n\n";
        for (const auto& [k, v] : diagnostics) {
            std::snprintf(buf, sizeof buf, "- %s: %.4f\n", k.c_str(), summarize(v).mean);
            md += buf;
        }
        md += "\nCheckpoints (safetensors) are in `seed-*/`; `skillvec analyze` and `skillvec inspect` read them.\n";
        write_atomically(out / "report.md", md);
        c.say("wrote " + (out / "results.json").string() + " and " + (out / "report.md").string());
        std::printf("\n%s", md.c_str());
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "past_demo: %s\n", e.what());
        return 1;
    }
}
