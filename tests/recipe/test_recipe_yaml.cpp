// Recipe files: valid recipes for every method load into the expected spec, and malformed ones fail
// with golden messages (file:line:col: message).
#include "../tmpdir.hpp"

#include <skillvec/recipe/yaml.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace sr = skillvec::recipe;
using skillvec::parameter;
using skillvec::tensor_site;

namespace {

sr::recipe_spec parse(const std::string& text, const std::string& file = "recipes/merge.yaml") {
    return sr::parse_recipe(text, file);
}

tensor_site site(std::string_view name, int layer, int num_layers) { return tensor_site{name, layer, num_layers}; }

const parameter& number(const std::map<std::string, sr::setting>& m, const std::string& name) {
    return std::get<parameter>(m.at(name).value);
}
bool boolean(const sr::recipe_spec& s, const std::string& name) { return std::get<bool>(s.parameters.at(name).value); }
std::string word(const sr::recipe_spec& s, const std::string& name) { return std::get<std::string>(s.parameters.at(name).value); }
std::int64_t integer(const sr::recipe_spec& s, const std::string& name) {
    return std::get<std::int64_t>(s.parameters.at(name).value);
}
float constant(const std::map<std::string, sr::setting>& m, const std::string& name) {
    const parameter& p = number(m, name);
    REQUIRE(p.is_constant());
    return p.constant();
}

const tensor_site embed = site("model.embed_tokens.weight", -1, 4);
const tensor_site head = site("lm_head.weight", -1, 4);

} // namespace

TEST_CASE("past: roles, paths resolved against the recipe's directory, lambda default", "[recipe]") {
    auto s = parse("merge_method: past\ntarget: ./sft_T\nrl: ../ckpt/rl\nsft: /abs/sft\n");
    CHECK(s.method == "past");
    CHECK(s.method_pos.str() == "recipes/merge.yaml:1:15");
    REQUIRE(s.roles.size() == 3);
    CHECK(s.roles.at("target").path == "recipes/sft_T");
    CHECK(s.roles.at("rl").path == "ckpt/rl");
    CHECK(s.roles.at("sft").path == "/abs/sft");
    CHECK(s.roles.at("target").name == "target");
    CHECK(s.roles.at("rl").where.str() == "recipes/merge.yaml:3:5");
    CHECK(!s.base_model);
    CHECK(s.models.empty());
    CHECK(constant(s.parameters, "lambda") == 1.0f);
    CHECK(s.parameters.at("lambda").where.line == 0); // a default
    CHECK(!s.out_dtype);
}

TEST_CASE("past: lambda as a gradient over layer position, interpolated", "[recipe]") {
    auto s = parse("merge_method: past\ntarget: t\nrl: {model: r}\nsft: s\nparameters:\n  lambda: [0.0, 1.0, 0.5]\n");
    CHECK(s.roles.at("rl").path == "recipes/r");
    const parameter& lam = number(s.parameters, "lambda");
    // 5 layers: t = l / 4; the gradient's points sit at t = 0, 0.5, 1.
    CHECK(lam.at(site("model.layers.0.mlp.up_proj.weight", 0, 5)) == 0.0f);
    CHECK(lam.at(site("model.layers.1.mlp.up_proj.weight", 1, 5)) == Approx(0.5));  // t = 0.25: halfway 0 -> 1
    CHECK(lam.at(site("model.layers.2.mlp.up_proj.weight", 2, 5)) == Approx(1.0));
    CHECK(lam.at(site("model.layers.3.mlp.up_proj.weight", 3, 5)) == Approx(0.75)); // halfway 1 -> 0.5
    CHECK(lam.at(embed) == 0.0f);
    CHECK(lam.at(head) == Approx(0.5));
    CHECK(s.parameters.at("lambda").where.str() == "recipes/merge.yaml:6:11");
}

TEST_CASE("orthogonal_past: base: or base_model: for the target's own base", "[recipe]") {
    for (const char* key : {"base", "base_model"}) {
        auto s = parse(std::string("merge_method: orthogonal_past\ntarget: t\nrl: r\nsft: s\n") + key + ": b0\nparameters: {lambda: 0.5}\n");
        REQUIRE(s.roles.size() == 4);
        CHECK(s.roles.at("base").path == "recipes/b0");
        REQUIRE(s.base_model);
        CHECK(s.base_model->path == "recipes/b0");
        CHECK(constant(s.parameters, "lambda") == 0.5f);
    }
}

TEST_CASE("task_arithmetic: defaults, a per-model parameter given globally, per-model overrides", "[recipe]") {
    auto s = parse(R"(merge_method: task_arithmetic
base_model: base
models:
  - model: a
  - model: b
    parameters:
      weight: 0.25
  - c                      # a bare path is shorthand for '- model: c'
parameters:
  weight: 0.5
  lambda: 2
)");
    REQUIRE(s.base_model);
    CHECK(s.base_model->path == "recipes/base");
    CHECK(s.base_model->name == "base");
    REQUIRE(s.models.size() == 3);
    CHECK(s.models[0].name == "a");
    CHECK(s.models[2].path == "recipes/c");
    CHECK(constant(s.models[0].parameters, "weight") == 0.5f);  // the global value
    CHECK(constant(s.models[1].parameters, "weight") == 0.25f); // its own
    CHECK(constant(s.models[2].parameters, "weight") == 0.5f);
    CHECK(s.models[0].parameters.at("weight").where.str() == "recipes/merge.yaml:10:11");
    CHECK(!s.parameters.count("weight")); // moved into the models
    CHECK(constant(s.parameters, "lambda") == 2.0f);
    CHECK(boolean(s, "normalize") == false);
}

TEST_CASE("task_arithmetic: weight defaults to 1", "[recipe]") {
    auto s = parse("merge_method: task_arithmetic\nbase_model: b\nmodels:\n  - model: x\n");
    CHECK(constant(s.models[0].parameters, "weight") == 1.0f);
    CHECK(constant(s.parameters, "lambda") == 1.0f);
}

TEST_CASE("linear: weights, normalize defaults to true", "[recipe]") {
    auto s = parse("merge_method: linear\nmodels:\n  - model: x\n    parameters: {weight: 3}\n  - model: y\n    parameters: {weight: 1}\n");
    REQUIRE(s.models.size() == 2);
    CHECK(!s.base_model);
    CHECK(constant(s.models[0].parameters, "weight") == 3.0f);
    CHECK(boolean(s, "normalize") == true);
    auto t = parse("merge_method: linear\nmodels: [{model: x}, {model: y}]\nparameters: {weight: 0.5, normalize: false}\n");
    CHECK(constant(t.models[1].parameters, "weight") == 0.5f);
    CHECK(boolean(t, "normalize") == false);
}

TEST_CASE("ties: the documented example; gradients, rules, exclusions, dtype", "[recipe]") {
    auto s = parse(R"(merge_method: ties
base_model: ./theta0              # paths resolve against the recipe file's directory
models:
  - model: ./math
    parameters:
      weight: 1.0
      density: [0.2, 0.5, 0.8]    # a gradient over layer position
  - model: ./code
    parameters:
      weight:                     # rules: first match wins; an entry without filter is the default
        - filter: mlp
          value: 0.5
        - filter: attn
          layers: [0, 3]
          value: [0.2, 0.4]
        - value: 1.0
  - model: ./theta0               # mergekit lists the base too: dropped (its delta is zero)
parameters:
  lambda: 1.0
  normalize: true
  consensus: count
exclude: [embed_tokens, {filter: lm_head}, {filter: norm, layers: [0, 1]}]
dtype: float32
out_dtype: bfloat16
)");
    CHECK(s.base_model->path == "recipes/theta0");
    REQUIRE(s.models.size() == 2);
    CHECK(s.models[0].path == "recipes/math");
    CHECK(s.models[1].path == "recipes/code");

    // density [0.2, 0.5, 0.8] over 4 layers (t = l / 3): points at t = 0, 0.5, 1.
    const parameter& d = number(s.models[0].parameters, "density");
    CHECK(d.at(site("model.layers.0.mlp.up_proj.weight", 0, 4)) == Approx(0.2));
    CHECK(d.at(site("model.layers.1.mlp.up_proj.weight", 1, 4)) == Approx(0.2 + (2.0 / 3.0) * 0.3)); // t = 1/3
    CHECK(d.at(site("model.layers.2.mlp.up_proj.weight", 2, 4)) == Approx(0.5 + (1.0 / 3.0) * 0.3)); // t = 2/3
    CHECK(d.at(site("model.layers.3.mlp.up_proj.weight", 3, 4)) == Approx(0.8));
    CHECK(d.at(embed) == Approx(0.2));
    CHECK(d.at(head) == Approx(0.8));
    CHECK(constant(s.models[1].parameters, "density") == 1.0f); // the default

    // weight rules: first match wins; layers [0, 3]; the default last.
    const parameter& w = number(s.models[1].parameters, "weight");
    CHECK(w.at(site("model.layers.5.mlp.up_proj.weight", 5, 8)) == 0.5f);      // mlp (no layer restriction)
    CHECK(w.at(site("model.layers.0.self_attn.q_proj.weight", 0, 8)) == Approx(0.2));
    CHECK(w.at(site("model.layers.3.self_attn.q_proj.weight", 3, 8)) == Approx(0.2 + 0.2 * 3.0 / 7.0)); // t = 3/7
    CHECK(w.at(site("model.layers.4.self_attn.q_proj.weight", 4, 8)) == 1.0f); // outside layers [0, 3]
    CHECK(w.at(site("model.norm.weight", -1, 8)) == 1.0f);
    CHECK(constant(s.models[0].parameters, "weight") == 1.0f);

    CHECK(constant(s.parameters, "lambda") == 1.0f);
    CHECK(boolean(s, "normalize") == true);
    CHECK(word(s, "consensus") == "count");
    REQUIRE(s.exclude.size() == 3);
    CHECK(s.exclude[0].first.pattern == "embed_tokens");
    CHECK(s.exclude[1].first.pattern == "lm_head");
    CHECK(s.exclude[2].first.layers == std::pair{0, 1});
    CHECK(s.exclude[2].first.matches(site("model.layers.1.input_layernorm.weight", 1, 4)));
    CHECK(!s.exclude[2].first.matches(site("model.layers.2.input_layernorm.weight", 2, 4)));
    CHECK(s.exclude[0].second.str() == "recipes/merge.yaml:22:11");
    CHECK(s.out_dtype == skillvec::dtype::bf16); // out_dtype wins over dtype
}

TEST_CASE("ties: defaults", "[recipe]") {
    auto s = parse("merge_method: ties\nbase_model: b\nmodels: [{model: x}]\n");
    CHECK(constant(s.models[0].parameters, "weight") == 1.0f);
    CHECK(constant(s.models[0].parameters, "density") == 1.0f);
    CHECK(boolean(s, "normalize") == true);
    CHECK(word(s, "consensus") == "sum");
    CHECK(s.parameters.size() == 3); // lambda, normalize, consensus
}

TEST_CASE("dare_linear and dare_ties: density required, seed, rescale, consensus", "[recipe]") {
    auto s = parse("merge_method: dare_linear\nbase_model: b\nmodels: [x, y]\nparameters: {density: 0.3, seed: 42}\n");
    CHECK(constant(s.models[1].parameters, "density") == 0.3f);
    CHECK(integer(s, "seed") == 42);
    CHECK(boolean(s, "rescale") == true);
    CHECK(boolean(s, "normalize") == false);
    CHECK(!s.parameters.count("consensus"));
    auto t = parse("merge_method: dare_ties\nbase_model: b\nmodels:\n  - model: x\n    parameters: {density: 0.5}\n"
                   "parameters: {rescale: false}\n");
    CHECK(boolean(t, "rescale") == false);
    CHECK(boolean(t, "normalize") == true);
    CHECK(word(t, "consensus") == "sum");
    CHECK(integer(t, "seed") == 0);
}

TEST_CASE("breadcrumbs, breadcrumbs_ties, magnitude_prune", "[recipe]") {
    auto s = parse("merge_method: breadcrumbs\nbase_model: b\nmodels:\n  - model: x\n    parameters: {density: 0.9, gamma: 0.05}\n"
                   "  - model: y\n    parameters: {density: 0.8}\n");
    CHECK(constant(s.models[0].parameters, "gamma") == 0.05f);
    CHECK(constant(s.models[1].parameters, "gamma") == 0.01f);
    CHECK(boolean(s, "normalize") == false);
    auto t = parse("merge_method: breadcrumbs_ties\nbase_model: b\nmodels: [x]\nparameters: {density: 0.9}\n");
    CHECK(boolean(t, "normalize") == true);
    CHECK(word(t, "consensus") == "sum");
    auto u = parse("merge_method: magnitude_prune\nbase_model: b\nmodels: [x]\nparameters: {density: [0, 1]}\n");
    CHECK(number(u.models[0].parameters, "density").at(site("model.layers.1.mlp.w", 1, 3)) == Approx(0.5));
    CHECK(constant(u.parameters, "lambda") == 1.0f);
}

TEST_CASE("slerp: base_model and one model (the base may be listed too), t per filter", "[recipe]") {
    auto s = parse(R"(merge_method: slerp
base_model: a
models:
  - model: a
  - model: b
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bf16
)");
    REQUIRE(s.models.size() == 1);
    CHECK(s.models[0].path == "recipes/b");
    const parameter& t = number(s.parameters, "t");
    CHECK(t.at(site("model.layers.0.self_attn.o_proj.weight", 0, 5)) == 0.0f);
    CHECK(t.at(site("model.layers.2.self_attn.o_proj.weight", 2, 5)) == Approx(0.3));
    CHECK(t.at(site("model.layers.1.mlp.down_proj.weight", 1, 5)) == Approx(0.5));
    CHECK(t.at(site("model.layers.1.input_layernorm.weight", 1, 5)) == 0.5f);
    CHECK(s.out_dtype == skillvec::dtype::bf16);
}

TEST_CASE("expression: named models, parameters, the formula's affine form", "[recipe]") {
    auto s = parse(R"(merge_method: expression
models:
  target: ./sft_T
  rl: {model: ./rl}
  sft: ./sft
parameters:
  lambda: [0.5, 1.5]
expression: target + lambda * (rl - sft)
out_dtype: fp16
)");
    REQUIRE(s.models.size() == 3);
    CHECK(s.models[1].name == "rl");
    CHECK(s.roles.at("rl").path == "recipes/rl");
    CHECK(s.expression == "target + lambda * (rl - sft)");
    CHECK(s.expression_pos.str() == "recipes/merge.yaml:8:13");
    REQUIRE(s.formula);
    CHECK(s.formula->is_point);
    CHECK(s.formula->point_operand == "target");
    CHECK(s.formula->describe() == "point: 1 * target + lambda * rl + (-lambda) * sft");
    std::map<std::string, parameter> values{{"lambda", number(s.parameters, "lambda")}};
    const auto mid = site("model.layers.1.mlp.w", 1, 3); // t = 0.5: lambda = 1
    CHECK(s.formula->coefficient(0, mid, values) == 1.0);
    CHECK(s.formula->coefficient(1, mid, values) == Approx(1.0));
    CHECK(s.formula->coefficient(2, head, values) == Approx(-1.5));
    CHECK(s.out_dtype == skillvec::dtype::f16);
}

TEST_CASE("expression: a quoted or folded formula", "[recipe]") {
    auto s = parse("merge_method: expression\nmodels: {a: x, b: y}\nexpression: \"lerp(a, b, 0.25)\"\n");
    CHECK(s.formula->describe() == "point: 0.75 * a + 0.25 * b");
    auto t = parse("merge_method: expression\nmodels: {a: x, b: y}\nexpression: >\n  a - b\n");
    CHECK(!t.formula->is_point);
}

TEST_CASE("dtype names and aliases", "[recipe]") {
    using skillvec::dtype;
    const std::pair<const char*, dtype> cases[] = {{"float32", dtype::f32},  {"fp32", dtype::f32},  {"f32", dtype::f32},
                                                  {"float16", dtype::f16},  {"FP16", dtype::f16},  {"f16", dtype::f16},
                                                  {"bfloat16", dtype::bf16}, {"bf16", dtype::bf16}, {"float64", dtype::f64},
                                                  {"fp64", dtype::f64},     {"f64", dtype::f64}};
    for (const auto& [name, want] : cases) {
        CAPTURE(name);
        CHECK(parse(std::string("merge_method: past\ntarget: t\nrl: r\nsft: s\ndtype: ") + name + "\n").out_dtype == want);
    }
}

TEST_CASE("load_recipe reads a file and resolves paths against its directory", "[recipe]") {
    test::tmpdir dir;
    test::write_file(dir / "r.yaml", std::string("merge_method: past\ntarget: t\nrl: ../r\nsft: s\n"));
    auto s = sr::load_recipe(dir / "r.yaml");
    CHECK(s.roles.at("target").path == (dir.path() / "t").lexically_normal());
    CHECK(s.roles.at("rl").path == (dir.path().parent_path() / "r").lexically_normal());
    CHECK(s.file == dir / "r.yaml");
    CHECK_THROWS_WITH(sr::load_recipe(dir / "missing.yaml"), (dir / "missing.yaml").string() + ": cannot read the recipe file");
    test::write_file(dir / "bad.yaml", std::string("merge_method: pst\n"));
    CHECK_THROWS_WITH(sr::load_recipe(dir / "bad.yaml"),
                      Catch::StartsWith((dir / "bad.yaml").string() + ":1:15: unknown merge_method 'pst'; did you mean 'past'?"));
}

// --- golden error messages ------------------------------------------------------------------------

namespace {
struct golden {
    const char* what;     ///< what the case shows
    const char* text;     ///< the recipe
    const char* message;  ///< the exact what(), for file "r.yaml"
};

// A valid past recipe to break one thing at a time.
#define PAST "merge_method: past\ntarget: t\nrl: r\nsft: s\n"
#define TIES "merge_method: ties\nbase_model: b\nmodels:\n  - model: x\n"
#define EXPR "merge_method: expression\nmodels: {a: x, b: y, c: z}\nparameters: {lambda: 0.5}\n"

const golden cases[] = {
    // the document
    {"empty file", "", "r.yaml:1:1: the recipe is empty: expected 'merge_method: ...' and its inputs"},
    {"comments only", "# nothing\n", "r.yaml:1:1: the recipe is empty: expected 'merge_method: ...' and its inputs"},
    {"a list", "- merge_method: past\n", "r.yaml:1:1: a recipe is a mapping of keys (merge_method: ..., models: ...), not a list"},
    {"a scalar", "past\n", "r.yaml:1:1: a recipe is a mapping of keys (merge_method: ..., models: ...), not a single value"},
    {"YAML syntax", "merge_method: past\nmodels: [a, b\n", "r.yaml:3:1: invalid YAML: end of sequence flow not found"},
    {"YAML: bad indentation", "merge_method: past\ntarget: t\n  rl: r\n", "r.yaml:3:5: invalid YAML: illegal map value"},
    {"two documents", PAST "---\nmerge_method: ties\n",
     "r.yaml:6:1: a recipe is one YAML document; remove the second one (after '---')"},
    {"duplicate key", PAST "rl: r2\n", "r.yaml:5:1: duplicate key 'rl' (first at line 3)"},
    {"a list as a key", "[a]: 1\n", "r.yaml:1:1: a key must be a name, not a list or mapping"},

    // top-level keys
    {"unknown key, suggested", "merge_methd: past\n", "r.yaml:1:1: unknown key 'merge_methd'; did you mean 'merge_method'?"},
    {"unknown key, listed", PAST "colour: red\n",
     "r.yaml:5:1: unknown key 'colour' (recipe keys: merge_method, base_model, models, parameters, exclude, dtype, "
     "out_dtype, expression, target, rl, sft, base)"},
    {"slices", "slices:\n  - sources: []\nmerge_method: past\n",
     "r.yaml:1:1: 'slices' is not supported by skillvec: skillvec merges whole models layer for layer (give a parameter "
     "per layer range with '- filter: ..., layers: [first, last]' instead)"},
    {"tokenizer_source", TIES "tokenizer_source: union\n",
     "r.yaml:5:1: 'tokenizer_source' is not supported by skillvec: skillvec does not merge vocabularies: every model "
     "must have the same tensors and shapes"},
    {"chat_template", TIES "chat_template: chatml\n",
     "r.yaml:5:1: 'chat_template' is not supported by skillvec: skillvec writes weights, not tokenizer configuration"},

    // the method
    {"no merge_method", "target: t\n",
     "r.yaml:1:1: missing merge_method: (one of past, orthogonal_past, task_arithmetic, linear, ties, dare_linear, "
     "dare_ties, breadcrumbs, breadcrumbs_ties, magnitude_prune, slerp, expression)"},
    {"unknown method, suggested", "merge_method: tie\n",
     "r.yaml:1:15: unknown merge_method 'tie'; did you mean 'ties'? (methods: past, orthogonal_past, task_arithmetic, "
     "linear, ties, dare_linear, dare_ties, breadcrumbs, breadcrumbs_ties, magnitude_prune, slerp, expression)"},
    {"a mergekit method skillvec lacks", "merge_method: model_stock\n",
     "r.yaml:1:15: merge_method 'model_stock' is a mergekit method skillvec does not implement (methods: past, "
     "orthogonal_past, task_arithmetic, linear, ties, dare_linear, dare_ties, breadcrumbs, breadcrumbs_ties, "
     "magnitude_prune, slerp, expression)"},
    {"merge_method a list", "merge_method: [ties]\n", "r.yaml:1:15: 'merge_method' must be a method name, not a list"},
    {"merge_method empty", "merge_method:\n", "r.yaml:1:1: 'merge_method' has no value: expected a method name"},

    // roles and models
    {"missing role", "merge_method: past\ntarget: t\nsft: s\n", "r.yaml:1:15: past needs rl: (the model after RL)"},
    {"orthogonal_past without base", "merge_method: orthogonal_past\ntarget: t\nrl: r\nsft: s\n",
     "r.yaml:1:15: orthogonal_past needs base: (the model target was fine-tuned from)"},
    {"base and base_model", "merge_method: orthogonal_past\ntarget: t\nrl: r\nsft: s\nbase: b\nbase_model: b\n",
     "r.yaml:6:1: give base: or base_model:, not both"},
    {"role for a list method", TIES "target: t\n", "r.yaml:5:1: 'target' does not apply to ties: it takes base_model: and models:"},
    {"base for past", PAST "base: b\n", "r.yaml:5:1: 'base' does not apply to past: it takes target:, rl: and sft:"},
    {"base for ties", TIES "base: b\n",
     "r.yaml:5:1: 'base' does not apply to ties: it takes base_model: and models: (the base is base_model:)"},
    {"models for past", PAST "models: [a]\n", "r.yaml:5:1: 'models' does not apply to past: it takes target:, rl: and sft:"},
    {"base_model for past", PAST "base_model: b\n", "r.yaml:5:1: 'base_model' does not apply to past: it takes target:, rl: and sft:"},
    {"base_model for linear", "merge_method: linear\nbase_model: b\nmodels: [a]\n",
     "r.yaml:2:1: 'base_model' does not apply to linear: it averages the models themselves (task_arithmetic merges "
     "deltas from a base)"},
    {"expression for ties", TIES "expression: a - b\n", "r.yaml:5:1: 'expression' applies only to merge_method: expression"},
    {"missing base_model", "merge_method: ties\nmodels: [a]\n",
     "r.yaml:1:15: ties needs base_model: (the model the others are deltas from)"},
    {"missing models", "merge_method: ties\nbase_model: b\n", "r.yaml:1:15: ties needs models: (a list of '- model: PATH')"},
    {"empty models", "merge_method: ties\nbase_model: b\nmodels: []\n", "r.yaml:3:9: ties needs at least 1 model, got 0 besides base_model"},
    {"only the base", "merge_method: ties\nbase_model: b\nmodels:\n  - model: b\n",
     "r.yaml:4:3: ties needs at least 1 model, got 0 besides base_model"},
    {"slerp with two models", "merge_method: slerp\nbase_model: a\nmodels: [b, c]\nparameters: {t: 0.5}\n",
     "r.yaml:3:9: slerp merges exactly 1 model into base_model, got 2 besides base_model"},
    {"models a mapping", "merge_method: ties\nbase_model: b\nmodels:\n  x: ./x\n",
     "r.yaml:4:3: models: of ties is a list of '- model: PATH' entries (a mapping name: path is for merge_method: expression)"},
    {"entry without model:", "merge_method: ties\nbase_model: b\nmodels:\n  - parameters: {weight: 1}\n",
     "r.yaml:4:5: a models entry needs model: (the path of a checkpoint)"},
    {"weight beside model:", "merge_method: ties\nbase_model: b\nmodels:\n  - model: x\n    weight: 1\n",
     "r.yaml:5:5: 'weight' goes under the model's parameters:"},
    {"unknown key in an entry", "merge_method: ties\nbase_model: b\nmodels:\n  - model: x\n    lora: y\n",
     "r.yaml:5:5: unknown key 'lora' in a models entry (it takes model: and parameters:)"},
    {"duplicate model", "merge_method: ties\nbase_model: b\nmodels:\n  - model: x\n  - model: ./x\n",
     "r.yaml:5:12: model './x' is listed twice (first at line 4)"},
    {"empty path", "merge_method: past\ntarget: ''\nrl: r\nsft: s\n", "r.yaml:2:9: 'target' is an empty path"},
    {"path a list", "merge_method: past\ntarget: [a, b]\nrl: r\nsft: s\n",
     "r.yaml:2:9: 'target' must be the path of a checkpoint, not a list"},
    {"base in models with parameters", "merge_method: ties\nbase_model: b\nmodels:\n  - model: a\n  - model: b\n    parameters: {weight: 1}\n",
     "r.yaml:6:17: 'b' is the base_model: it takes no parameters (its delta is zero)"},

    // parameters
    {"parameter that does not apply", TIES "parameters:\n  gamma: 0.1\n",
     "r.yaml:6:3: 'gamma' does not apply to ties (it takes: weight, density, lambda, normalize, consensus)"},
    {"misspelt parameter", PAST "parameters: {lamda: 2}\n", "r.yaml:5:14: 'lamda' does not apply to past (it takes: lambda); did you mean 'lambda'?"},
    {"global parameter per model", "merge_method: ties\nbase_model: b\nmodels:\n  - model: x\n    parameters: {lambda: 2}\n",
     "r.yaml:5:18: 'lambda' is a global parameter of ties: put it under the top-level parameters:"},
    {"string for a number", PAST "parameters: {lambda: high}\n", "r.yaml:5:22: 'lambda' values must be numbers, got 'high'"},
    {"bool for a number", PAST "parameters: {lambda: true}\n", "r.yaml:5:22: 'lambda' values must be numbers, got 'true'"},
    {"gradient of non-numbers", PAST "parameters: {lambda: [0, x]}\n",
     "r.yaml:5:26: 'lambda' gradient values must be numbers, got 'x'"},
    {"nested gradient", PAST "parameters: {lambda: [0, [1]]}\n",
     "r.yaml:5:26: 'lambda' gradient values must be numbers, got a list"},
    {"empty gradient", PAST "parameters: {lambda: []}\n",
     "r.yaml:5:22: 'lambda' is an empty list: a gradient needs at least one value"},
    {"a mapping for a number", PAST "parameters:\n  lambda: {mlp: 1}\n",
     "r.yaml:6:11: 'lambda' must be a number, a list of numbers (a gradient) or a list of rules (- filter: PATTERN, value: V)"},
    {"infinite", PAST "parameters: {lambda: .inf}\n", "r.yaml:5:22: 'lambda' must be finite, got '.inf'"},
    {"nan", PAST "parameters: {lambda: [0, .nan]}\n", "r.yaml:5:26: 'lambda' must be finite, got '.nan'"},
    {"beyond float", PAST "parameters: {lambda: 1e39}\n",
     "r.yaml:5:22: 'lambda' must be finite, got '1e39' (out of the range of a float)"},
    {"no value", PAST "parameters:\n  lambda:\n", "r.yaml:6:3: 'lambda' has no value"},
    {"density above 1", TIES "    parameters: {density: 1.5}\n", "r.yaml:5:27: 'density' must be in [0, 1], got 1.5"},
    {"density in a gradient", TIES "    parameters: {density: [0.5, -0.1]}\n",
     "r.yaml:5:33: 'density' must be in [0, 1], got -0.1"},
    {"gamma above 1", "merge_method: breadcrumbs\nbase_model: b\nmodels: [x]\nparameters: {density: 0.9, gamma: 2}\n",
     "r.yaml:4:35: 'gamma' must be in [0, 1], got 2"},
    {"required per-model parameter", "merge_method: linear\nmodels:\n  - model: x\n    parameters: {weight: 1}\n  - model: y\n",
     "r.yaml:5:12: model 'y' needs 'weight' (under its parameters:, or for every model under the top-level parameters:)"},
    {"density required", "merge_method: dare_ties\nbase_model: b\nmodels: [x]\n",
     "r.yaml:3:10: model 'x' needs 'density' (under its parameters:, or for every model under the top-level parameters:)"},
    {"required global parameter", "merge_method: slerp\nbase_model: a\nmodels: [b]\n",
     "r.yaml:1:15: slerp needs 't' under parameters: (interpolation position: 0 is base_model, 1 the other model)"},
    {"bad boolean", TIES "parameters: {normalize: 0.5}\n", "r.yaml:5:25: 'normalize' must be true or false, got '0.5'"},
    {"bad consensus", TIES "parameters: {consensus: avg}\n", "r.yaml:5:25: 'consensus' must be sum or count, got 'avg'"},
    {"bad seed", "merge_method: dare_linear\nbase_model: b\nmodels: [x]\nparameters: {density: 0.5, seed: -3}\n",
     "r.yaml:4:34: 'seed' must be a whole number >= 0, got '-3'"},
    {"parameters a list", PAST "parameters: [lambda]\n", "r.yaml:5:13: parameters: is a mapping (lambda: 1.0, ...)"},

    // rules and layer ranges
    {"rule without value", PAST "parameters:\n  lambda:\n    - filter: mlp\n",
     "r.yaml:7:7: a rule of 'lambda' needs value:"},
    {"unknown key in a rule", PAST "parameters:\n  lambda:\n    - filter: mlp\n      values: 1\n",
     "r.yaml:8:7: unknown key 'values' in a rule (it takes filter:, layers: and value:)"},
    {"rules mixed with values", PAST "parameters:\n  lambda:\n    - {filter: mlp, value: 1}\n    - 0.5\n",
     "r.yaml:8:7: 'lambda' mixes rules and values: every entry of a rule list is '- filter: ..., value: ...'"},
    {"rule after the default", PAST "parameters:\n  lambda:\n    - value: 1\n    - {filter: mlp, value: 2}\n",
     "r.yaml:8:7: this rule never applies: the rule at line 7 has no filter and matches every tensor first"},
    {"nested rules", PAST "parameters:\n  lambda:\n    - filter: mlp\n      value: [{value: 1}]\n",
     "r.yaml:8:14: a rule's value is a number or a gradient, not more rules"},
    {"layer range of one", PAST "parameters:\n  lambda:\n    - {filter: mlp, layers: [3], value: 1}\n",
     "r.yaml:7:29: layers is an inclusive range [first, last] of two whole numbers >= 0"},
    {"negative layer", PAST "parameters:\n  lambda:\n    - {filter: mlp, layers: [-1, 3], value: 1}\n",
     "r.yaml:7:30: layers is an inclusive range [first, last] of two whole numbers >= 0"},
    {"fractional layer", PAST "exclude:\n  - {filter: mlp, layers: [0, 2.5]}\n",
     "r.yaml:6:31: layers is an inclusive range [first, last] of two whole numbers >= 0"},
    {"reversed layer range", PAST "exclude:\n  - {layers: [4, 2]}\n", "r.yaml:6:14: layers [4, 2] is empty: first is after last"},

    // exclude and dtype
    {"exclude a string", PAST "exclude: lm_head\n",
     "r.yaml:5:10: exclude is a list of name patterns or of '{filter: PATTERN, layers: [first, last]}'"},
    {"exclude everything", PAST "exclude: ['*']\n", "r.yaml:5:11: this exclusion matches every tensor: nothing would be merged"},
    {"bad dtype", PAST "dtype: int8\n", "r.yaml:5:8: unknown dtype 'int8' (use float32, float16, bfloat16 or float64)"},
    {"bad out_dtype", PAST "out_dtype: bfloat\n", "r.yaml:5:12: unknown out_dtype 'bfloat' (use float32, float16, bfloat16 or float64)"},

    // expression: models and names
    {"expression models a list", "merge_method: expression\nmodels: [a]\nexpression: a\n",
     "r.yaml:2:9: models: of expression is a mapping from names to paths (name: ./path), so the expression can name them"},
    {"model name with a dash", "merge_method: expression\nmodels: {math-7b: x}\nexpression: a\n",
     "r.yaml:2:10: model name 'math-7b' cannot appear in an expression: use letters, digits and _, not starting with a digit"},
    {"missing expression", "merge_method: expression\nmodels: {a: x}\n",
     "r.yaml:1:15: expression needs expression: (a formula such as 'a + lambda * (b - c)')"},
    {"name is model and parameter", "merge_method: expression\nmodels: {a: x}\nparameters: {a: 1}\nexpression: a\n",
     "r.yaml:3:17: 'a' is both a model and a parameter"},
    {"unused parameter", "merge_method: expression\nmodels: {a: x, b: y}\nparameters: {mu: 1}\nexpression: a - b\n",
     "r.yaml:3:18: parameter 'mu' is not used by the expression"},
    {"unused model", EXPR "expression: lerp(a, b, lambda)\n", "r.yaml:2:25: model 'c' is not used by the expression"},
    {"parameter a word", "merge_method: expression\nmodels: {a: x}\nparameters: {mu: sum}\nexpression: a\n",
     "r.yaml:3:18: 'mu' values must be numbers, got 'sum'"},

    // expression: the formula (columns point into the file)
    {"point + point", EXPR "expression: a + b\n",
     "r.yaml:4:15: point + point is undefined: subtract them for a vector or use lerp"},
    {"scaling a point", EXPR "expression: lambda * a + (b - c)\n",
     "r.yaml:4:20: scaling a point is undefined: scale a vector such as (a - b)"},
    {"point / number", EXPR "expression: a / 2 + (b - c)\n", "r.yaml:4:15: scaling a point is undefined: scale a vector such as (a - b)"},
    {"negating a point", EXPR "expression: -a + 2 * (b - c)\n",
     "r.yaml:4:13: negating a point is undefined: negate a vector such as (a - b)"},
    {"vector - point", EXPR "expression: (b - c) - a\n", "r.yaml:4:21: vector - point is undefined: write point - vector"},
    {"lerp of a point and a vector", EXPR "expression: lerp(a, b - c, lambda)\n", "r.yaml:4:13: lerp needs two points or two vectors"},
    {"lerp's t a model", EXPR "expression: lerp(a, b, c)\n", "r.yaml:4:24: lerp's t must be a number"},
    {"lerp with 2 arguments", EXPR "expression: lerp(a, b) + lambda * (c - a)\n", "r.yaml:4:22: lerp takes 3 arguments (a, b, t), not 2"},
    {"unknown name", EXPR "expression: a + lambda * (b - d)\n",
     "r.yaml:4:31: unknown name 'd': not a model under models: (a, b, c) or a parameter under parameters: (lambda)"},
    {"a number", EXPR "expression: lambda * 2\n", "r.yaml:4:13: the expression is a number, not a model"},
    {"dividing by a model", EXPR "expression: a + (b - c) / a\n", "r.yaml:4:25: dividing by a model is undefined: divide by a number"},
    {"number + vector", EXPR "expression: a + (1 + (b - c))\n",
     "r.yaml:4:20: number + vector is undefined: a number can only scale a vector"},
    {"vector * vector", EXPR "expression: a + (b - c) * (b - a)\n",
     "r.yaml:4:25: vector * vector is undefined: models can only be scaled by numbers"},
    {"division by zero", EXPR "expression: a + (b - c) / 0\n", "r.yaml:4:25: division by zero"},
    {"unknown function", EXPR "expression: slerp(a, b, lambda)\n",
     "r.yaml:4:13: unknown function 'slerp': the only function is lerp(a, b, t)"},
    {"unclosed parenthesis", EXPR "expression: a + lambda * (b - c\n", "r.yaml:4:26: '(' is never closed"},
    {"dangling operator", EXPR "expression: a + lambda * (b - c) -\n",
     "r.yaml:4:35: expected a model, a parameter or a number at the end"},
    {"missing operator", EXPR "expression: a lambda\n", "r.yaml:4:15: expected an operator (+ - * /) before 'lambda'"},
    {"bad character", EXPR "expression: a + lambda % (b - c)\n", "r.yaml:4:24: expected an operator (+ - * /) before '%'"},
    {"in a quoted formula", EXPR "expression: \"a + b\"\n",
     "r.yaml:4:16: point + point is undefined: subtract them for a vector or use lerp"},
    {"in a folded formula", EXPR "expression: >\n  a + lambda * (b - c)\n  + c\n",
     "r.yaml:6:3: point + point is undefined: subtract them for a vector or use lerp"},
    {"empty formula", EXPR "expression: ''\n", "r.yaml:4:13: the expression is empty"},
    {"formula a list", EXPR "expression: [a]\n", "r.yaml:4:13: 'expression' must be a formula such as 'a + lambda * (b - c)', not a list"},
};
#undef PAST
#undef TIES
#undef EXPR
} // namespace

TEST_CASE("golden error messages", "[recipe][errors]") {
    CHECK(std::size(cases) >= 40);
    for (const golden& g : cases) {
        CAPTURE(g.what, g.text);
        std::string got = "(no error)";
        try {
            (void)sr::parse_recipe(g.text, "r.yaml");
        } catch (const sr::recipe_error& e) {
            got = e.what();
            // what() is the position and the message; both are also available apart.
            CHECK(got == e.where().str() + ": " + e.message());
        }
        CHECK(got == g.message);
    }
}
