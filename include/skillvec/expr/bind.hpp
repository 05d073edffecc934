#pragma once
/// \file
/// Binding: matching an expression's leaves (stores) tensor by tensor before any work is done.
///
/// The first leaf is the reference. For a point expression it is the *point operand* (the p of
/// p + v, the a of lerp(a, b, t)): its tensor order is the output order, non-float tensors pass
/// through from it, and its dtypes are kept unless an output dtype is asked for. Every other leaf
/// must have exactly the same tensor names, shapes and dtypes (except that a vector leaf, a saved
/// delta, may lack the reference's non-float tensors, which no vector holds). All disagreements are collected
/// and reported in one `binding_error`, so a user fixing a checkpoint sees every problem at once.

#include <skillvec/core/error.hpp>
#include <skillvec/core/store.hpp>
#include <skillvec/core/tensor_view.hpp>
#include <skillvec/expr/space.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace skillvec {

/// What evaluation does with one tensor.
enum class tensor_action {
    compute,      ///< float tensor: evaluated by the expression
    pass_through, ///< non-float tensor of a point expression: copied from the point operand
    skip,         ///< non-float tensor of a vector expression or reduction: left out (a vector of ints means nothing)
    keep          ///< float tensor excluded by eval_options::keep: the point operand's values (zeros in a vector)
};

/// One disagreement found while binding.
struct binding_problem {
    enum class kind { missing, extra, shape, dtype, invalid, duplicate };
    kind what;
    std::string tensor;
    std::size_t operand; ///< 0-based leaf index of the operand at fault
    std::string message; ///< one line, as printed
};

/// Thrown when an expression's stores disagree. what() lists every problem, one per line.
class binding_error : public error {
public:
    binding_error(const std::string& msg, std::vector<binding_problem> problems)
        : error(msg), problems_(std::move(problems)) {}
    [[nodiscard]] const std::vector<binding_problem>& problems() const noexcept { return problems_; }

private:
    std::vector<binding_problem> problems_;
};

/// How to evaluate: output dtype and how strict to be about dtypes.
struct eval_options {
    /// Output dtype of computed tensors. Default: the point operand's dtype for a point
    /// expression, f32 for a vector expression (deltas are small; bf16 would eat them).
    std::optional<dtype> out_dtype = std::nullopt;
    /// By default a tensor must have the same dtype in every operand. Set this to let float kinds
    /// differ (for example a bf16 target plus an f32 skill vector); all are computed in f32.
    bool allow_mixed_float_dtypes = false;
    /// Float tensors for which this returns true are not computed: a point result gets the point
    /// operand's tensor unchanged (converted if the output dtype differs), a vector result zeros,
    /// and reductions leave them out. For example embeddings and lm_head in a merge. Operands must
    /// still agree on them.
    std::function<bool(std::string_view name)> keep = nullptr;
};

namespace detail {

/// A leaf with its store's type erased, so binding and the kernels' drivers are not templates.
struct leaf_handle {
    std::string label;
    bool is_point = true;
    std::function<std::optional<tensor_view>(std::string_view)> find;
    std::function<void(std::string_view)> release;
    std::function<void(std::string_view, std::uint64_t, std::uint64_t)> release_range;
    std::vector<std::string> names;
};

struct plan_entry {
    tensor_info out;
    tensor_action action = tensor_action::compute;
    std::vector<tensor_view> inputs; ///< one per leaf, in leaf order
};

struct plan {
    std::vector<leaf_handle> leaves;
    std::vector<plan_entry> entries;
};

template <class E> std::vector<leaf_handle> collect_leaves(const E& e) {
    std::vector<leaf_handle> out;
    e.for_each_leaf([&](const auto& leaf) {
        const auto* store = &leaf.store();
        leaf_handle h;
        h.label = leaf.label();
        h.is_point = std::is_same_v<typename std::remove_cvref_t<decltype(leaf)>::space, point_space>;
        h.find = [store](std::string_view n) { return store->find(n); };
        h.release = [store](std::string_view n) { skillvec::release(*store, n); };
        h.release_range = [store](std::string_view n, std::uint64_t off, std::uint64_t count) {
            skillvec::release(*store, n, off, count);
        };
        for (auto&& n : store->tensor_names()) h.names.emplace_back(std::string_view(n));
        out.push_back(std::move(h));
    });
    return out;
}

inline std::string operand_name(const std::vector<leaf_handle>& leaves, std::size_t k) {
    std::string s = "#" + std::to_string(k + 1);
    if (!leaves[k].label.empty()) s += " '" + leaves[k].label + "'";
    return s;
}

/// Builds the per-tensor plan, or throws one binding_error listing every problem.
inline plan make_plan(std::vector<leaf_handle> leaves, bool point_result, const eval_options& opt) {
    if (opt.out_dtype && !is_arithmetic(*opt.out_dtype))
        throw error("output dtype " + std::string(name_of(*opt.out_dtype)) + " is not a float kind (F16, BF16, F32, F64)");
    plan p;
    std::vector<binding_problem> problems;
    auto problem = [&](binding_problem::kind k, const std::string& tensor, std::size_t op, std::string msg) {
        problems.push_back({k, tensor, op, std::move(msg)});
    };
    const std::size_t L = leaves.size();

    std::vector<std::unordered_set<std::string_view>> sets(L);
    for (std::size_t k = 0; k < L; ++k) {
        for (const auto& n : leaves[k].names)
            if (!sets[k].insert(n).second)
                problem(binding_problem::kind::duplicate, n, k,
                        "duplicate: '" + n + "' is listed twice by " + operand_name(leaves, k));
    }

    std::unordered_set<std::string_view> done;
    for (const auto& name : leaves[0].names) {
        if (!done.insert(name).second) continue;
        plan_entry e;
        e.inputs.resize(L);
        bool ok = true;
        for (std::size_t k = 0; k < L; ++k) {
            if (!sets[k].count(name)) {
                // A vector operand (a saved delta) has no non-float tensors: they pass through from
                // the point operand, so it may lack them. Point operands must still have them.
                if (k > 0 && !leaves[k].is_point && ok && !is_arithmetic(e.inputs[0].type)) continue;
                problem(binding_problem::kind::missing, name, k,
                        "missing: '" + name + "' is in " + operand_name(leaves, 0) + " but not in " + operand_name(leaves, k));
                ok = false;
                continue;
            }
            auto v = leaves[k].find(name);
            if (!v) {
                problem(binding_problem::kind::invalid, name, k,
                        "invalid: " + operand_name(leaves, k) + " lists '" + name + "' but find() does not return it");
                ok = false;
                continue;
            }
            try {
                check_view(*v, "invalid: '" + name + "' in " + operand_name(leaves, k));
            } catch (const error& err) {
                problem(binding_problem::kind::invalid, name, k, err.what());
                ok = false;
                continue;
            }
            e.inputs[k] = *v;
        }
        if (!ok) continue;
        const tensor_view& ref = e.inputs[0];
        for (std::size_t k = 1; k < L; ++k) {
            if (!sets[k].count(name)) continue; // a vector operand without a non-float tensor (see above)
            const tensor_view& v = e.inputs[k];
            if (!(v.dims == ref.dims)) {
                problem(binding_problem::kind::shape, name, k,
                        "shape: '" + name + "' is " + ref.dims.to_string() + " in " + operand_name(leaves, 0) + " but " +
                            v.dims.to_string() + " in " + operand_name(leaves, k));
                ok = false;
            }
            const bool both_float = is_arithmetic(v.type) && is_arithmetic(ref.type);
            if (v.type != ref.type && !(both_float && opt.allow_mixed_float_dtypes)) {
                std::string msg = "dtype: '" + name + "' is " + std::string(name_of(ref.type)) + " in " +
                                  operand_name(leaves, 0) + " but " + std::string(name_of(v.type)) + " in " +
                                  operand_name(leaves, k);
                if (both_float) msg += " (set allow_mixed_float_dtypes to compute across float kinds)";
                problem(binding_problem::kind::dtype, name, k, msg);
                ok = false;
            }
        }
        if (!ok) continue;
        e.out.name = name;
        e.out.dims = ref.dims;
        if (is_arithmetic(ref.type)) {
            e.action = opt.keep && opt.keep(name) ? tensor_action::keep : tensor_action::compute;
            e.out.type = opt.out_dtype.value_or(point_result ? ref.type : dtype::f32);
        } else {
            e.action = point_result ? tensor_action::pass_through : tensor_action::skip;
            e.out.type = ref.type;
        }
        p.entries.push_back(std::move(e));
    }
    for (std::size_t k = 1; k < L; ++k)
        for (const auto& n : leaves[k].names)
            if (!sets[0].count(n))
                problem(binding_problem::kind::extra, n, k,
                        "extra: '" + n + "' is in " + operand_name(leaves, k) + " but not in " + operand_name(leaves, 0));

    if (!problems.empty()) {
        std::string msg = "cannot bind expression to its stores: " + std::to_string(problems.size()) +
                          (problems.size() == 1 ? " problem" : " problems") + "\n  operands:";
        for (std::size_t k = 0; k < L; ++k)
            msg += (k ? ", " : " ") + operand_name(leaves, k) + (leaves[k].is_point ? " (point)" : " (vector)");
        for (const auto& pr : problems) msg += "\n  " + pr.message;
        throw binding_error(msg, std::move(problems));
    }
    p.leaves = std::move(leaves);
    return p;
}

} // namespace detail
} // namespace skillvec
