#pragma once
/// \file
/// A merge recipe as data: what a recipe file (YAML, see recipe/yaml.hpp) says, after validation,
/// before any checkpoint is opened. `recipe/run.hpp` turns a spec into the typed expressions of
/// the algebra and evaluates them.
///
/// Every element remembers where it came from in the file (`source_pos`), so that errors found
/// later (a model that cannot be opened, a parameter with no value for some tensor) still name the
/// file and line.

#include <skillvec/core/dtype.hpp>
#include <skillvec/core/error.hpp>
#include <skillvec/expr/parameter.hpp>
#include <skillvec/recipe/formula.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace skillvec::recipe {

/// A place in a recipe file: 1-based line and column (0 when unknown).
struct source_pos {
    std::string file;
    int line = 0;
    int column = 0;

    /// "recipe.yaml:12:5" (or just the file).
    [[nodiscard]] std::string str() const {
        std::string s = file;
        if (line > 0) s += ":" + std::to_string(line);
        if (line > 0 && column > 0) s += ":" + std::to_string(column);
        return s;
    }
};

/// A recipe that is malformed or cannot be carried out. what() is one line: "file:line:col: message".
class recipe_error : public error {
public:
    recipe_error(const source_pos& where, const std::string& message)
        : error(where.str().empty() ? message : where.str() + ": " + message), where_(where), message_(message) {}
    [[nodiscard]] const source_pos& where() const noexcept { return where_; }
    /// The message without the position.
    [[nodiscard]] const std::string& message() const noexcept { return message_; }

private:
    source_pos where_;
    std::string message_;
};

/// One setting from the file, with its position.
struct setting {
    std::variant<parameter, bool, std::string, std::int64_t> value; ///< number (per tensor), bool, enum word, integer
    source_pos where;
};

/// A model named in the recipe.
struct model_ref {
    std::string name;              ///< models: list and base_model: the path as written; roles: the role; expression: the key
    std::filesystem::path path;    ///< resolved against the recipe file's directory (lexically normal)
    /// Per-model parameters (weight, density, gamma). After validation every per-model parameter
    /// of the method is here: the model's own value, else the one under the top-level
    /// parameters:, else the method's default (whose `where` has line 0).
    std::map<std::string, setting> parameters;
    source_pos where;              ///< the path's position in the file
};

/// A validated recipe.
struct recipe_spec {
    std::filesystem::path file;   ///< the recipe file ("" when built in code)
    std::string method;           ///< past, orthogonal_past, task_arithmetic, linear, ties, dare_ties, ...
    source_pos method_pos;

    /// base_model: (task arithmetic family, slerp); for orthogonal_past a copy of roles["base"].
    std::optional<model_ref> base_model;
    /// models: in file order, without an entry that repeats base_model (mergekit recipes list the
    /// base among the models; its delta is zero). For expression: the named models, in file order.
    std::vector<model_ref> models;
    /// past / orthogonal_past: target, rl, sft (and base); expression: every named model (a copy of `models`).
    std::map<std::string, model_ref> roles;
    /// Global parameters (lambda, normalize, t, seed, consensus, ...). After validation every
    /// global parameter of the method is here (defaults filled in, with line 0); per-model
    /// parameters given here were moved into each model's map. For expression: the formula's
    /// numbers, each a `parameter`.
    std::map<std::string, setting> parameters;
    std::vector<std::pair<tensor_filter, source_pos>> exclude; ///< tensors passed through from the point operand

    std::optional<dtype> out_dtype;            ///< out_dtype (or dtype): the output's float dtype
    std::string expression;                    ///< merge_method: expression: the formula as written
    source_pos expression_pos;
    std::optional<affine_form> formula;        ///< merge_method: expression: the type-checked formula
};

} // namespace skillvec::recipe
