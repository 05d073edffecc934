// Training throughput of the in-library transformer: one full step (forward, masked
// cross-entropy, backward, gradient clipping, AdamW) on the default ~0.39M-parameter model.
// benchmarks/torch_train_throughput.py times the same step in PyTorch for the side-by-side
// table in docs/performance.md.
//
//   bench_train --benchmark_counters_tabular=true
#include <skillvec/nn/adamw.hpp>
#include <skillvec/nn/gpt.hpp>
#include <skillvec/nn/loss.hpp>
#include <skillvec/nn/sampling.hpp>
#include <skillvec/nn/sft.hpp>

#include <benchmark/benchmark.h>

#include <memory>
#include <vector>

namespace nn = skillvec::nn;

namespace {

struct setup {
    explicit setup(unsigned threads, std::size_t batch, std::size_t len)
        : pool(threads), model(nn::gpt_config{}, 1, &pool), B(batch), T(len),
          adam(model.num_params(), nn::decay_groups(model.layout(), 0.1)) {
        nn::rng g(2);
        for (std::size_t i = 0; i < B * T; ++i) {
            tokens.push_back(static_cast<std::int32_t>(g.below(512)));
            targets.push_back(static_cast<std::int32_t>(g.below(512)));
        }
    }
    void step() {
        const auto logits = model.forward(tokens, B, T);
        nn::cross_entropy<float>(logits, 512, targets, model.dlogits(), 1.0, &pool);
        model.zero_grad();
        model.backward();
        nn::clip_grad_norm(model.grads(), 1.0);
        adam.step(model.params(), model.grads(), 1e-3);
    }
    skillvec::detail::thread_pool pool;
    nn::gpt<float> model;
    std::size_t B, T;
    nn::adamw<float> adam;
    std::vector<std::int32_t> tokens, targets;
};

void train_step(benchmark::State& state) {
    const auto threads = static_cast<unsigned>(state.range(0));
    const auto B = static_cast<std::size_t>(state.range(1));
    setup s(threads, B, 64);
    s.step(); // sizes the activation buffers
    for (auto _ : state) s.step();
    state.counters["tokens/s"] =
        benchmark::Counter(static_cast<double>(B * 64), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(train_step)->ArgNames({"threads", "batch"})->Args({1, 16})->Args({2, 16})->Args({2, 32})->Unit(benchmark::kMillisecond)->UseRealTime();

/// Sampling cost: 128 rows (16 prompts x G = 8) of a 12-token prompt, 4 new tokens each.
void sample_rows(benchmark::State& state) {
    skillvec::detail::thread_pool pool(static_cast<unsigned>(state.range(0)));
    nn::gpt<float> model(nn::gpt_config{}, 1, &pool);
    std::vector<std::vector<std::int32_t>> prompts(128, std::vector<std::int32_t>(12, 5));
    nn::sampling_options o;
    o.max_new_tokens = 4;
    o.eos_id = -1;
    nn::rng g(3);
    for (auto _ : state) benchmark::DoNotOptimize(nn::generate(model, prompts, o, g));
    state.counters["rows/s"] = benchmark::Counter(128.0, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(sample_rows)->ArgNames({"threads"})->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

} // namespace

BENCHMARK_MAIN();
