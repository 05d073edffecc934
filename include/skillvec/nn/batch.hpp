#pragma once
/// \file
/// Training sequences and padded batches for next-token prediction.
///
/// A `sequence` is token ids plus which tokens are *scored* (predicted by the loss): all of them
/// for a document, only the answer for a question. A batch of B sequences becomes inputs
/// [B, Tn] = tokens[0 .. n-2] and targets [B, Tn] = tokens[1 .. n-1], right-padded to the longest
/// input with `pad_id` and `ignore_index`. Causal attention means the padding after a sequence
/// cannot change its logits, so no attention mask is needed.

#include <skillvec/core/error.hpp>
#include <skillvec/nn/loss.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace skillvec::nn {

/// Token ids and the loss mask. `scored[i]` says whether tokens[i] is a target (scored[0] is
/// never used: nothing predicts the first token). An empty `scored` scores every token but the first.
struct sequence {
    std::vector<std::int32_t> tokens;
    std::vector<std::uint8_t> scored;

    [[nodiscard]] bool is_scored(std::size_t i) const { return scored.empty() ? i > 0 : scored[i] != 0; }
};

/// A padded batch: inputs and targets [rows, len], row-major.
struct batch {
    std::size_t rows = 0, len = 0;
    std::vector<std::int32_t> inputs, targets;

    /// Positions that are scored.
    [[nodiscard]] std::size_t scored() const {
        return static_cast<std::size_t>(std::count_if(targets.begin(), targets.end(), [](auto t) { return t != ignore_index; }));
    }
};

/// Builds a batch from `seqs` (each with at least 2 tokens and at most context + 1). Throws
/// naming the sequence otherwise, or if `scored` has the wrong size.
[[nodiscard]] inline batch make_batch(std::span<const sequence* const> seqs, std::int32_t pad_id, std::size_t context) {
    batch b;
    b.rows = seqs.size();
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        const sequence& s = *seqs[i];
        if (s.tokens.size() < 2)
            throw error("make_batch: sequence " + std::to_string(i) + " has " + std::to_string(s.tokens.size()) +
                        " tokens; next-token training needs at least 2");
        if (s.tokens.size() > context + 1)
            throw error("make_batch: sequence " + std::to_string(i) + " has " + std::to_string(s.tokens.size()) +
                        " tokens; the model's context holds " + std::to_string(context) + " inputs (+1 target)");
        if (!s.scored.empty() && s.scored.size() != s.tokens.size())
            throw error("make_batch: sequence " + std::to_string(i) + " has " + std::to_string(s.scored.size()) +
                        " mask entries for " + std::to_string(s.tokens.size()) + " tokens");
        b.len = std::max(b.len, s.tokens.size() - 1);
    }
    b.inputs.assign(b.rows * b.len, pad_id);
    b.targets.assign(b.rows * b.len, ignore_index);
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        const sequence& s = *seqs[i];
        for (std::size_t t = 0; t + 1 < s.tokens.size(); ++t) {
            b.inputs[i * b.len + t] = s.tokens[t];
            if (s.is_scored(t + 1)) b.targets[i * b.len + t] = s.tokens[t + 1];
        }
    }
    return b;
}

/// Convenience overload for a contiguous range of sequences.
[[nodiscard]] inline batch make_batch(std::span<const sequence> seqs, std::int32_t pad_id, std::size_t context) {
    std::vector<const sequence*> p;
    p.reserve(seqs.size());
    for (const auto& s : seqs) p.push_back(&s);
    return make_batch(std::span<const sequence* const>(p), pad_id, context);
}

} // namespace skillvec::nn
