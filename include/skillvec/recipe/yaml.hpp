#pragma once
/// \file
/// Recipe files: a mergekit-style YAML recipe, loaded and validated into a `recipe_spec`.
///
///   recipe_spec spec = load_recipe("merge.yaml");     // throws recipe_error: "merge.yaml:7:14: ..."
///
/// Validation is complete before anything else happens: the method and its inputs, every
/// parameter (kind, range, per-model or global), filters, exclusions, dtypes and, for
/// `merge_method: expression`, the formula's types. Model paths are resolved against the recipe's
/// directory but not opened (the runner does that). Every error names the file, line and column of
/// the offending node. docs/recipes.md ("Recipe files") describes the format.
///
/// Needs yaml-cpp (link the CMake target skillvec::recipe_yaml).

#include <skillvec/core/dtype.hpp>
#include <skillvec/recipe/catalog.hpp>
#include <skillvec/recipe/formula.hpp>
#include <skillvec/recipe/spec.hpp>

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace skillvec::recipe {

namespace yaml_detail {

/// Levenshtein distance (for "did you mean").
inline std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::size_t> row(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        std::size_t diag = row[0];
        row[0] = i;
        for (std::size_t j = 1; j <= b.size(); ++j) {
            const std::size_t up = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
            diag = up;
        }
    }
    return row[b.size()];
}

/// The closest candidate, if it is close enough to be a likely typo ("" otherwise).
template <class Range> std::string closest(std::string_view word, const Range& candidates) {
    std::string best;
    std::size_t best_d = std::max<std::size_t>(2, word.size() / 3) + 1;
    for (std::string_view c : candidates) {
        std::size_t d = edit_distance(word, c);
        if (word.size() >= 3 && c.substr(0, word.size()) == word) d = std::min<std::size_t>(d, 1); // a prefix
        if (d < best_d) {
            best_d = d;
            best = std::string(c);
        }
    }
    return best;
}

template <class Range> std::string join(const Range& words, std::string_view sep = ", ") {
    std::string out;
    for (std::string_view w : words) out += (out.empty() ? "" : std::string(sep)) + std::string(w);
    return out;
}

/// "a, b and c".
inline std::string and_list(const std::vector<std::string>& words) {
    std::string out;
    for (std::size_t i = 0; i < words.size(); ++i)
        out += (i == 0 ? "" : i + 1 == words.size() ? " and " : ", ") + words[i];
    return out;
}

/// What a top-level key means, for the unknown-key and unsupported-key messages.
inline constexpr std::string_view top_level_keys[] = {"merge_method", "base_model", "models", "parameters", "exclude",
                                                        "dtype", "out_dtype", "expression", "target", "rl", "sft", "base"};

/// mergekit keys skillvec does not support, and why.
inline std::string_view unsupported_reason(std::string_view key) {
    if (key == "slices" || key == "modules")
        return "skillvec merges whole models layer for layer (give a parameter per layer range with "
               "'- filter: ..., layers: [first, last]' instead)";
    if (key == "tokenizer_source" || key == "tokenizer")
        return "skillvec does not merge vocabularies: every model must have the same tensors and shapes";
    if (key == "chat_template") return "skillvec writes weights, not tokenizer configuration";
    return {};
}

/// mergekit methods skillvec does not implement (a clearer message than "unknown").
inline bool mergekit_only_method(std::string_view m) {
    for (std::string_view k : {"passthrough", "model_stock", "della", "della_linear", "nuslerp", "sce", "karcher",
                               "nearswap", "arcee_fusion", "multislerp"})
        if (m == k) return true;
    return false;
}

inline std::string role_doc(std::string_view role) {
    if (role == "target") return "the model that receives the skill";
    if (role == "rl") return "the model after RL";
    if (role == "sft") return "the model RL started from";
    return "the model target was fine-tuned from";
}

class loader {
public:
    loader(std::string_view text, const std::filesystem::path& file)
        : text_(text), file_(file.string()), dir_(file.parent_path()) {}

    recipe_spec load() {
        std::vector<YAML::Node> docs;
        try {
            docs = YAML::LoadAll(std::string(text_));
        } catch (const YAML::Exception& e) {
            throw recipe_error(pos(e.mark), "invalid YAML: " + e.msg);
        }
        if (docs.size() > 1) fail(docs[1], "a recipe is one YAML document; remove the second one (after '---')");
        if (docs.empty() || docs[0].IsNull())
            throw recipe_error(source_pos{file_, 1, 1}, "the recipe is empty: expected 'merge_method: ...' and its inputs");
        const YAML::Node& root = docs[0];
        if (!root.IsMap())
            fail(root, std::string("a recipe is a mapping of keys (merge_method: ..., models: ...), not a ") +
                           (root.IsSequence() ? "list" : "single value"));

        recipe_spec spec;
        spec.file = file_;
        for (const auto& [key, value] : entries(root)) {
            const std::string k = key.Scalar();
            if (std::find(std::begin(top_level_keys), std::end(top_level_keys), k) != std::end(top_level_keys)) {
                top_[k] = {key, value};
                continue;
            }
            if (auto why = unsupported_reason(k); !why.empty()) fail(key, "'" + k + "' is not supported by skillvec: " + std::string(why));
            std::string msg = "unknown key '" + k + "'";
            if (auto s = closest(k, top_level_keys); !s.empty()) msg += "; did you mean '" + s + "'?";
            else msg += " (recipe keys: " + join(top_level_keys) + ")";
            fail(key, msg);
        }

        // The method first: every later message depends on it.
        auto mm = top_.find("merge_method");
        if (mm == top_.end())
            throw recipe_error(source_pos{file_, 1, 1}, "missing merge_method: (one of " + method_names() + ")");
        const std::string name = scalar_text(mm->second, "merge_method", "a method name");
        method_ = find_method(name);
        if (!method_) {
            std::string msg = mergekit_only_method(name) ? "merge_method '" + name + "' is a mergekit method skillvec does not implement"
                                                         : "unknown merge_method '" + name + "'";
            if (auto s = closest(name, method_name_list()); !s.empty() && !mergekit_only_method(name)) msg += "; did you mean '" + s + "'?";
            fail(value_of(mm->second), msg + " (methods: " + method_names() + ")");
        }
        spec.method = name;
        spec.method_pos = where(mm->second);
        method_node_ = value_of(mm->second);

        check_keys_apply();
        read_inputs(spec);
        read_parameters(spec);
        read_exclude(spec);
        read_dtype(spec);
        if (method_->inputs == method_inputs::named_models) read_expression(spec);
        return spec;
    }

private:
    using key_value = std::pair<YAML::Node, YAML::Node>;

    std::string_view text_;
    std::string file_;
    std::filesystem::path dir_;
    std::map<std::string, key_value> top_;
    const method_def* method_ = nullptr;
    YAML::Node method_node_;

    // --- positions and errors ----------------------------------------------------------------

    [[nodiscard]] source_pos pos(const YAML::Mark& m) const {
        if (m.line < 0) return source_pos{file_, 0, 0};
        return source_pos{file_, m.line + 1, m.column + 1};
    }
    [[nodiscard]] source_pos pos(const YAML::Node& n) const { return pos(n.Mark()); }
    /// A value's position; an empty value has none of its own (yaml-cpp marks where the next token
    /// starts), so it is the key's.
    [[nodiscard]] source_pos where(const key_value& kv) const { return kv.second.IsNull() ? pos(kv.first) : pos(kv.second); }
    /// The node to blame for a value: the value, or its key if the value is empty.
    [[nodiscard]] static const YAML::Node& value_of(const key_value& kv) { return kv.second.IsNull() ? kv.first : kv.second; }
    [[noreturn]] void fail(const YAML::Node& n, const std::string& message) const { throw recipe_error(pos(n), message); }

    static std::vector<std::string_view> method_name_list() {
        std::vector<std::string_view> out;
        for (const method_def& m : methods()) out.push_back(m.name);
        return out;
    }
    static std::string method_names() { return join(method_name_list()); }

    /// A mapping's entries in file order; keys must be plain names and appear once.
    [[nodiscard]] std::vector<key_value> entries(const YAML::Node& map) const {
        std::vector<key_value> out;
        std::map<std::string, int> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            const YAML::Node key = it->first; // a copy: `it->` yields a temporary proxy
            if (!key.IsScalar()) fail(key, "a key must be a name, not a list or mapping");
            auto [at, fresh] = seen.emplace(key.Scalar(), key.Mark().line + 1);
            if (!fresh) fail(key, "duplicate key '" + key.Scalar() + "' (first at line " + std::to_string(at->second) + ")");
            out.emplace_back(key, it->second);
        }
        return out;
    }

    /// A scalar's text; anything else is an error naming `what` it should be.
    [[nodiscard]] std::string scalar_text(const key_value& kv, const std::string& key, const std::string& what) const {
        if (kv.second.IsNull()) fail(kv.first, "'" + key + "' has no value: expected " + what);
        if (!kv.second.IsScalar()) fail(kv.second, "'" + key + "' must be " + what + ", not a " + kind_word(kv.second));
        return kv.second.Scalar();
    }
    static std::string kind_word(const YAML::Node& n) { return n.IsSequence() ? "list" : n.IsMap() ? "mapping" : "value"; }

    // --- which keys apply --------------------------------------------------------------------

    /// What the method's inputs are, for "does not apply" messages.
    [[nodiscard]] std::string takes() const {
        switch (method_->inputs) {
        case method_inputs::past_roles: return "it takes target:, rl: and sft:";
        case method_inputs::orthogonal_roles: return "it takes target:, rl:, sft: and base:";
        case method_inputs::base_and_models: return "it takes base_model: and models:";
        case method_inputs::models_only: return "it takes models:";
        case method_inputs::base_and_one: return "it takes base_model: and models: (one model)";
        case method_inputs::named_models: return "it takes models: (name: path) and expression:";
        }
        return {};
    }

    void check_keys_apply() const {
        const std::string m(method_->name);
        const auto roles = method_->roles();
        for (std::string_view role : {"target", "rl", "sft", "base"}) {
            auto it = top_.find(std::string(role));
            if (it == top_.end()) continue;
            const bool ok = std::find(roles.begin(), roles.end(), role) != roles.end();
            if (!ok)
                fail(it->second.first, "'" + std::string(role) + "' does not apply to " + m + ": " + takes() +
                                           (role == "base" && method_->takes_base_model() ? " (the base is base_model:)" : ""));
        }
        if (auto it = top_.find("base_model"); it != top_.end() && !method_->takes_base_model()) {
            if (method_->inputs == method_inputs::orthogonal_roles) {
                if (top_.count("base")) fail(it->second.first, "give base: or base_model:, not both");
            } else if (method_->inputs == method_inputs::models_only) {
                fail(it->second.first, "'base_model' does not apply to linear: it averages the models themselves "
                                       "(task_arithmetic merges deltas from a base)");
            } else {
                fail(it->second.first, "'base_model' does not apply to " + m + ": " + takes());
            }
        }
        if (auto it = top_.find("models"); it != top_.end() && !method_->takes_models())
            fail(it->second.first, "'models' does not apply to " + m + ": " + takes());
        if (auto it = top_.find("expression"); it != top_.end() && method_->inputs != method_inputs::named_models)
            fail(it->second.first, "'expression' applies only to merge_method: expression");
    }

    // --- models ------------------------------------------------------------------------------

    [[nodiscard]] std::filesystem::path resolve(const std::string& text) const {
        std::filesystem::path p(text);
        if (p.is_relative()) p = dir_ / p;
        return p.lexically_normal();
    }

    /// A model given as a path, or as {model: path} (for base_model, roles and expression's models).
    [[nodiscard]] model_ref model_value(const key_value& kv, const std::string& name, bool allow_parameters) const {
        const std::string key = kv.first.Scalar();
        if (kv.second.IsNull()) fail(kv.first, "'" + key + "' has no value: expected the path of a checkpoint");
        if (kv.second.IsMap()) {
            std::optional<key_value> model;
            for (const auto& e : entries(kv.second)) {
                const std::string k = e.first.Scalar();
                if (k == "model") model = e;
                else if (k == "parameters" && !allow_parameters)
                    fail(e.first, "'" + key + "' takes no parameters here: put them under the top-level parameters:");
                else fail(e.first, "unknown key '" + k + "' in '" + key + "' (it takes model:)");
            }
            if (!model) fail(kv.second, "'" + key + "' needs model: (the path of a checkpoint)");
            return path_value(*model, name);
        }
        return path_value(kv, name);
    }

    [[nodiscard]] model_ref path_value(const key_value& kv, const std::string& name) const {
        const std::string key = kv.first.Scalar();
        const std::string text = scalar_text(kv, key, "the path of a checkpoint");
        if (text.empty()) fail(kv.second, "'" + key + "' is an empty path");
        model_ref m;
        m.name = name.empty() ? text : name;
        m.path = resolve(text);
        m.where = pos(kv.second);
        return m;
    }

    void read_inputs(recipe_spec& spec) {
        const std::string m(method_->name);
        // Role-based methods: target:, rl:, sft: (and base:, or base_model: for it).
        for (std::string_view role_view : method_->roles()) {
            const std::string role(role_view);
            auto it = top_.find(role);
            if (it == top_.end() && role == "base") it = top_.find("base_model");
            if (it == top_.end())
                fail(method_node_, m + " needs " + role + ": (" + role_doc(role) + ")");
            spec.roles[role] = model_value(it->second, role, false);
        }
        if (method_->inputs == method_inputs::orthogonal_roles) spec.base_model = spec.roles.at("base");

        if (method_->takes_base_model()) {
            auto it = top_.find("base_model");
            if (it == top_.end()) fail(method_node_, m + " needs base_model: (the model the others are deltas from)");
            spec.base_model = model_value(it->second, "", false);
        }
        if (!method_->takes_models()) return;

        auto it = top_.find("models");
        if (it == top_.end()) {
            fail(method_node_, m + " needs models: " +
                                   (method_->inputs == method_inputs::named_models ? std::string("(a mapping name: path)")
                                                                                   : std::string("(a list of '- model: PATH')")));
        }
        const key_value& kv = it->second;
        if (method_->inputs == method_inputs::named_models) {
            read_named_models(spec, kv);
        } else {
            read_model_list(spec, kv);
        }
        const std::size_t n = spec.models.size();
        if (n < method_->min_models || n > method_->max_models) {
            std::string msg = method_->min_models == method_->max_models
                                  ? m + " merges exactly " + std::to_string(method_->min_models) + " model into base_model"
                                  : m + " needs at least " + std::to_string(method_->min_models) + " model" +
                                        (method_->min_models == 1 ? "" : "s");
            msg += ", got " + std::to_string(n);
            if (method_->takes_base_model()) msg += " besides base_model";
            fail(value_of(kv), msg);
        }
    }

    void read_model_list(recipe_spec& spec, const key_value& kv) {
        const std::string m(method_->name);
        if (kv.second.IsNull()) fail(kv.first, "'models' has no entries: expected a list of '- model: PATH'");
        if (kv.second.IsMap())
            fail(kv.second, "models: of " + m + " is a list of '- model: PATH' entries (a mapping name: path is for merge_method: expression)");
        if (!kv.second.IsSequence()) fail(kv.second, "models: is a list of '- model: PATH' entries");
        std::map<std::string, int> seen; // resolved path -> line
        for (const YAML::Node& entry : kv.second) {
            model_ref ref;
            YAML::Node params;
            if (entry.IsScalar()) {
                ref = path_value({entry, entry}, "");
            } else if (entry.IsMap()) {
                std::optional<key_value> model;
                for (const auto& e : entries(entry)) {
                    const std::string k = e.first.Scalar();
                    if (k == "model") {
                        model = e;
                    } else if (k == "parameters") {
                        params = e.second.IsNull() ? YAML::Node() : e.second;
                        if (!e.second.IsNull() && !e.second.IsMap()) fail(e.second, "a model's parameters: is a mapping (weight: 1.0, ...)");
                    } else if (method_->find_parameter(k)) {
                        fail(e.first, "'" + k + "' goes under the model's parameters:");
                    } else {
                        fail(e.first, "unknown key '" + k + "' in a models entry (it takes model: and parameters:)");
                    }
                }
                if (!model) fail(entry, "a models entry needs model: (the path of a checkpoint)");
                ref = path_value(*model, "");
            } else {
                fail(entry, "a models entry is '- model: PATH' (with optional parameters:), not a list");
            }
            const std::string key = ref.path.string();
            if (spec.base_model && ref.path == spec.base_model->path) {
                // mergekit recipes list the base among the models; its delta is zero, so it is dropped.
                if (params && params.size() > 0)
                    fail(params, "'" + ref.name + "' is the base_model: it takes no parameters (its delta is zero)");
                continue;
            }
            auto [at, fresh] = seen.emplace(key, ref.where.line);
            if (!fresh) fail(entry.IsMap() ? entry["model"] : entry, "model '" + ref.name + "' is listed twice (first at line " + std::to_string(at->second) + ")");
            if (params) read_model_parameters(ref, params);
            spec.models.push_back(std::move(ref));
        }
    }

    void read_named_models(recipe_spec& spec, const key_value& kv) {
        if (kv.second.IsNull()) fail(kv.first, "'models' has no entries: expected a mapping name: path");
        if (!kv.second.IsMap())
            fail(kv.second, "models: of expression is a mapping from names to paths (name: ./path), so the expression can name them");
        for (const auto& e : entries(kv.second)) {
            const std::string name = e.first.Scalar();
            const bool ident = !name.empty() && !std::isdigit(static_cast<unsigned char>(name[0])) &&
                               std::all_of(name.begin(), name.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
            if (!ident) fail(e.first, "model name '" + name + "' cannot appear in an expression: use letters, digits and _, not starting with a digit");
            if (name == "lerp") fail(e.first, "'lerp' is the expression's function; name the model something else");
            model_ref ref = model_value(e, name, false);
            spec.roles[name] = ref;
            spec.models.push_back(std::move(ref));
        }
    }

    // --- parameters --------------------------------------------------------------------------

    [[nodiscard]] std::string parameter_names() const {
        std::vector<std::string_view> names;
        for (const parameter_def& p : method_->parameters) names.push_back(p.name);
        return names.empty() ? "no parameters" : join(names);
    }

    [[nodiscard]] std::string not_applicable(const std::string& name) const {
        std::string msg = "'" + name + "' does not apply to " + std::string(method_->name) + " (it takes: " + parameter_names() + ")";
        std::vector<std::string_view> names;
        for (const parameter_def& p : method_->parameters) names.push_back(p.name);
        if (auto s = closest(name, names); !s.empty()) msg += "; did you mean '" + s + "'?";
        return msg;
    }

    void read_model_parameters(model_ref& ref, const YAML::Node& params) const {
        for (const auto& e : entries(params)) {
            const std::string name = e.first.Scalar();
            const parameter_def* def = method_->find_parameter(name);
            if (!def) fail(e.first, not_applicable(name));
            if (def->scope == parameter_scope::global)
                fail(e.first, "'" + name + "' is a global parameter of " + std::string(method_->name) +
                                  ": put it under the top-level parameters:");
            ref.parameters[name] = read_setting(*def, e);
        }
    }

    void read_parameters(recipe_spec& spec) const {
        const std::string m(method_->name);
        auto it = top_.find("parameters");
        if (it != top_.end() && !it->second.second.IsNull()) {
            const YAML::Node& params = it->second.second;
            if (!params.IsMap()) fail(params, "parameters: is a mapping (lambda: 1.0, ...)");
            for (const auto& e : entries(params)) {
                const std::string name = e.first.Scalar();
                if (method_->inputs == method_inputs::named_models) {
                    // expression: any number, named by the formula (checked there).
                    parameter_def def{.name = "", .kind = parameter_kind::number};
                    spec.parameters[name] = read_setting(def, e, name);
                    continue;
                }
                const parameter_def* def = method_->find_parameter(name);
                if (!def) fail(e.first, not_applicable(name));
                spec.parameters[name] = read_setting(*def, e);
            }
        }
        // Per-model parameters: a model's own value, else the global one, else the default.
        for (const parameter_def& def : method_->parameters) {
            const std::string name(def.name);
            if (def.scope == parameter_scope::per_model) {
                std::optional<setting> global;
                if (auto g = spec.parameters.find(name); g != spec.parameters.end()) {
                    global = g->second;
                    spec.parameters.erase(g);
                }
                for (model_ref& ref : spec.models) {
                    if (ref.parameters.count(name)) continue;
                    if (global) ref.parameters[name] = *global;
                    else if (!def.required) ref.parameters[name] = default_setting(def);
                    else
                        throw recipe_error(ref.where, "model '" + ref.name + "' needs '" + name +
                                                          "' (under its parameters:, or for every model under the top-level parameters:)");
                }
            } else if (!spec.parameters.count(name)) {
                if (def.required)
                    fail(method_node_, m + " needs '" + name + "' under parameters: (" + std::string(def.doc) + ")");
                spec.parameters[name] = default_setting(def);
            }
        }
    }

    [[nodiscard]] setting default_setting(const parameter_def& def) const {
        setting s;
        s.where = source_pos{file_, 0, 0};
        switch (def.kind) {
        case parameter_kind::number: s.value = parameter(static_cast<float>(def.default_value)); break;
        case parameter_kind::boolean: s.value = def.default_value != 0; break;
        case parameter_kind::word: s.value = std::string(def.default_word); break;
        case parameter_kind::integer: s.value = static_cast<std::int64_t>(def.default_value); break;
        }
        return s;
    }

    /// One parameter's value, checked against its definition.
    [[nodiscard]] setting read_setting(const parameter_def& def, const key_value& kv, std::string name = {}) const {
        if (name.empty()) name = std::string(def.name);
        if (kv.second.IsNull()) fail(kv.first, "'" + name + "' has no value");
        setting s;
        s.where = pos(kv.second);
        const YAML::Node& v = kv.second;
        switch (def.kind) {
        case parameter_kind::number: s.value = read_number_parameter(def, name, v); break;
        case parameter_kind::boolean: {
            std::string t = v.IsScalar() ? lower(v.Scalar()) : "";
            if (t != "true" && t != "false") fail(v, "'" + name + "' must be true or false, got " + shown(v));
            s.value = t == "true";
            break;
        }
        case parameter_kind::word: {
            const bool ok = v.IsScalar() && std::find(def.words.begin(), def.words.end(), v.Scalar()) != def.words.end();
            if (!ok) fail(v, "'" + name + "' must be " + or_list(def.words) + ", got " + shown(v));
            s.value = v.Scalar();
            break;
        }
        case parameter_kind::integer: {
            std::int64_t n = 0;
            const std::string t = v.IsScalar() ? v.Scalar() : "";
            auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
            if (t.empty() || ec != std::errc() || end != t.data() + t.size() || n < 0)
                fail(v, "'" + name + "' must be a whole number >= 0, got " + shown(v));
            s.value = n;
            break;
        }
        }
        return s;
    }

    static std::string lower(std::string s) {
        for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    }
    static std::string or_list(std::span<const std::string_view> words) {
        std::string out;
        for (std::size_t i = 0; i < words.size(); ++i)
            out += (i == 0 ? "" : i + 1 == words.size() ? " or " : ", ") + std::string(words[i]);
        return out;
    }
    /// How a bad value is shown in a message: 'text', or "a list" / "a mapping".
    static std::string shown(const YAML::Node& n) {
        if (n.IsScalar()) return "'" + n.Scalar() + "'";
        return n.IsSequence() ? "a list" : "a mapping";
    }

    /// A finite float, within the parameter's bounds.
    [[nodiscard]] float number(const parameter_def& def, const std::string& name, const YAML::Node& v, const char* what) const {
        if (!v.IsScalar()) fail(v, "'" + name + "' " + what + " must be numbers, got " + shown(v));
        std::string t = v.Scalar();
        const std::string l = lower(t);
        if (l == ".inf" || l == "+.inf" || l == "-.inf" || l == ".nan" || l == "inf" || l == "-inf" || l == "nan" || l == "+inf")
            fail(v, "'" + name + "' must be finite, got '" + t + "'");
        std::string_view body = t;
        if (!body.empty() && body[0] == '+') body.remove_prefix(1);
        double d = 0;
        auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), d);
        if (body.empty() || end != body.data() + body.size() || (ec != std::errc() && ec != std::errc::result_out_of_range))
            fail(v, "'" + name + "' " + what + " must be numbers, got '" + t + "'");
        if (ec == std::errc::result_out_of_range || !std::isfinite(static_cast<float>(d)))
            fail(v, "'" + name + "' must be finite, got '" + t + "' (out of the range of a float)");
        if (d < def.min || d > def.max)
            fail(v, "'" + name + "' must be in [" + detail::format_scalar(static_cast<float>(def.min)) + ", " +
                        detail::format_scalar(static_cast<float>(def.max)) + "], got " + t);
        return static_cast<float>(d);
    }

    /// A constant (a number) or a gradient (a list of numbers).
    [[nodiscard]] parameter constant_or_gradient(const parameter_def& def, const std::string& name, const YAML::Node& v) const {
        if (v.IsScalar()) return parameter(number(def, name, v, "values"));
        if (v.IsSequence()) {
            if (v.size() == 0) fail(v, "'" + name + "' is an empty list: a gradient needs at least one value");
            std::vector<float> points;
            for (const YAML::Node& p : v) points.push_back(number(def, name, p, "gradient values"));
            return parameter::gradient(std::move(points));
        }
        fail(v, "'" + name + "' must be a number or a list of numbers (a gradient), not a mapping");
    }

    [[nodiscard]] parameter read_number_parameter(const parameter_def& def, const std::string& name, const YAML::Node& v) const {
        const bool rules = v.IsSequence() && v.size() > 0 && v[0].IsMap();
        if (v.IsMap())
            fail(v, "'" + name + "' must be a number, a list of numbers (a gradient) or a list of rules "
                                 "(- filter: PATTERN, value: V)");
        if (!rules) return constant_or_gradient(def, name, v);
        std::vector<parameter::rule> rs;
        std::optional<int> catch_all_line;
        for (const YAML::Node& r : v) {
            if (!r.IsMap()) fail(r, "'" + name + "' mixes rules and values: every entry of a rule list is '- filter: ..., value: ...'");
            if (catch_all_line)
                fail(r, "this rule never applies: the rule at line " + std::to_string(*catch_all_line) +
                            " has no filter and matches every tensor first");
            tensor_filter f;
            std::optional<parameter> value;
            for (const auto& e : entries(r)) {
                const std::string k = e.first.Scalar();
                if (k == "filter") f.pattern = scalar_text(e, "filter", "a tensor name pattern");
                else if (k == "layers") f.layers = layer_range(e);
                else if (k == "value") {
                    if (e.second.IsNull()) fail(e.first, "'value' has no value");
                    if (e.second.IsSequence() && e.second.size() > 0 && e.second[0].IsMap())
                        fail(e.second, "a rule's value is a number or a gradient, not more rules");
                    value = constant_or_gradient(def, name, e.second);
                } else fail(e.first, "unknown key '" + k + "' in a rule (it takes filter:, layers: and value:)");
            }
            if (!value) fail(r, "a rule of '" + name + "' needs value:");
            if (f.matches_all()) catch_all_line = r.Mark().line + 1;
            rs.push_back({std::move(f), std::move(*value)});
        }
        return parameter::rules(std::move(rs));
    }

    /// layers: [first, last], inclusive, whole numbers >= 0.
    [[nodiscard]] std::pair<int, int> layer_range(const key_value& kv) const {
        const YAML::Node& v = kv.second;
        const std::string rule = "layers is an inclusive range [first, last] of two whole numbers >= 0";
        if (v.IsNull()) fail(kv.first, rule);
        if (!v.IsSequence() || v.size() != 2) fail(v, rule);
        int out[2] = {0, 0};
        for (std::size_t i = 0; i < 2; ++i) {
            const YAML::Node& n = v[i];
            const std::string t = n.IsScalar() ? n.Scalar() : "";
            long long x = 0;
            auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), x);
            if (t.empty() || ec != std::errc() || end != t.data() + t.size() || x < 0 || x > INT_MAX) fail(n, rule);
            out[i] = static_cast<int>(x);
        }
        if (out[0] > out[1])
            fail(v, "layers [" + std::to_string(out[0]) + ", " + std::to_string(out[1]) + "] is empty: first is after last");
        return {out[0], out[1]};
    }

    // --- exclude, dtype, expression ----------------------------------------------------------

    void read_exclude(recipe_spec& spec) const {
        auto it = top_.find("exclude");
        if (it == top_.end() || it->second.second.IsNull()) return;
        const YAML::Node& v = it->second.second;
        const std::string shape = "exclude is a list of name patterns or of '{filter: PATTERN, layers: [first, last]}'";
        if (!v.IsSequence()) fail(v, shape);
        for (const YAML::Node& e : v) {
            tensor_filter f;
            if (e.IsScalar()) {
                f.pattern = e.Scalar();
                if (f.pattern.empty()) fail(e, "an empty exclude pattern would exclude every tensor");
            } else if (e.IsMap()) {
                bool any = false;
                for (const auto& kv : entries(e)) {
                    const std::string k = kv.first.Scalar();
                    if (k == "filter") f.pattern = scalar_text(kv, "filter", "a tensor name pattern");
                    else if (k == "layers") f.layers = layer_range(kv);
                    else fail(kv.first, "unknown key '" + k + "' in an exclusion (it takes filter: and layers:)");
                    any = true;
                }
                if (!any) fail(e, shape);
            } else {
                fail(e, shape);
            }
            if (f.matches_all()) fail(e, "this exclusion matches every tensor: nothing would be merged");
            spec.exclude.emplace_back(std::move(f), pos(e));
        }
    }

    [[nodiscard]] std::optional<dtype> dtype_value(const std::string& key) const {
        auto it = top_.find(key);
        if (it == top_.end()) return std::nullopt;
        const std::string t = lower(scalar_text(it->second, key, "a float dtype"));
        if (t == "float32" || t == "fp32" || t == "f32") return dtype::f32;
        if (t == "float16" || t == "fp16" || t == "f16") return dtype::f16;
        if (t == "bfloat16" || t == "bf16") return dtype::bf16;
        if (t == "float64" || t == "fp64" || t == "f64") return dtype::f64;
        fail(it->second.second, "unknown " + key + " '" + it->second.second.Scalar() +
                                    "' (use float32, float16, bfloat16 or float64)");
    }

    void read_dtype(recipe_spec& spec) const {
        const auto d = dtype_value("dtype");
        const auto o = dtype_value("out_dtype");
        spec.out_dtype = o ? o : d; // mergekit's dtype is its compute dtype; skillvec always computes in f32
    }

    /// The file position of byte `offset` of a scalar's value: the value's characters are matched
    /// against the raw text from the node's mark on, which accounts for quotes and line folding.
    [[nodiscard]] source_pos offset_pos(const YAML::Node& node, std::string_view value, std::size_t offset) const {
        const YAML::Mark m = node.Mark();
        source_pos p = pos(m);
        if (m.pos < 0 || static_cast<std::size_t>(m.pos) >= text_.size()) return p;
        std::size_t r = static_cast<std::size_t>(m.pos);
        int line = p.line, col = p.column;
        auto advance = [&] {
            if (text_[r] == '\n') {
                ++line;
                col = 1;
            } else {
                ++col;
            }
            ++r;
        };
        auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
        for (std::size_t i = 0; i <= offset && i < value.size(); ++i) {
            if (is_space(value[i])) continue;
            while (r < text_.size() && text_[r] != value[i]) advance();
            if (r >= text_.size()) return p; // not found: fall back to the scalar's start
            if (i == offset) return source_pos{file_, line, col};
            advance();
        }
        return source_pos{file_, line, col}; // the end of the formula
    }

    void read_expression(recipe_spec& spec) const {
        auto it = top_.find("expression");
        if (it == top_.end())
            fail(method_node_, "expression needs expression: (a formula such as 'a + lambda * (b - c)')");
        const std::string text = scalar_text(it->second, "expression", "a formula such as 'a + lambda * (b - c)'");
        std::set<std::string> models, params;
        for (const model_ref& r : spec.models) models.insert(r.name);
        for (const auto& [name, s] : spec.parameters) {
            if (models.count(name)) throw recipe_error(s.where, "'" + name + "' is both a model and a parameter");
            params.insert(name);
        }
        try {
            spec.formula = parse_formula(text, models, params);
        } catch (const formula_error& e) {
            throw recipe_error(offset_pos(it->second.second, text, e.offset()), e.what());
        }
        spec.expression = text;
        spec.expression_pos = pos(it->second.second);
        std::set<std::string> used_models;
        for (const auto& t : spec.formula->terms) used_models.insert(t.model);
        for (const model_ref& r : spec.models)
            if (!used_models.count(r.name)) throw recipe_error(r.where, "model '" + r.name + "' is not used by the expression");
        for (const auto& [name, s] : spec.parameters)
            if (!std::binary_search(spec.formula->parameters.begin(), spec.formula->parameters.end(), name))
                throw recipe_error(s.where, "parameter '" + name + "' is not used by the expression");
    }
};

} // namespace yaml_detail

/// Parses and validates a recipe given as text. `file_for_messages` names the file in errors and
/// is the directory relative model paths resolve against. Throws `recipe_error`.
[[nodiscard]] inline recipe_spec parse_recipe(std::string_view text, const std::filesystem::path& file_for_messages) {
    return yaml_detail::loader(text, file_for_messages).load();
}

/// Reads, parses and validates a recipe file. Throws `recipe_error` (also when it cannot be read).
[[nodiscard]] inline recipe_spec load_recipe(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw recipe_error(source_pos{file.string(), 0, 0}, "cannot read the recipe file");
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) throw recipe_error(source_pos{file.string(), 0, 0}, "cannot read the recipe file");
    return parse_recipe(buf.str(), file);
}

} // namespace skillvec::recipe
