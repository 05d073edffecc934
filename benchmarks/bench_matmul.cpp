// skillvec::nn::detail::gemm on the in-library transformer's shapes, against OpenBLAS when it was
// found at configure time (SKILLVEC_BENCH_OPENBLAS).
//
// Rows are named  <op>/<impl>/M:<m>/N:<n>/K:<k>/threads:<t>  where <op> is the model's use:
//   fwd  Y = X W^T        NT  (M rows, N outputs, K inputs)
//   bwd  dX = dY W        NN  (M rows, K outputs, N inputs)
//   wgt  dW += dY^T X     TN  with beta = 1 (N x K, summed over the M rows)
//   attn one head's attention product at T = 64, head_dim = 24 (scores NT, P*V NN, dV TN)
// and <impl> is skillvec (our xsimd kernel, with a thread_pool of <t> threads) or openblas
// (cblas_sgemm with openblas_set_num_threads(<t>)). The GFLOPS counter is 2*M*N*K per call.
//
//   bench_matmul --benchmark_filter='/M:1024/'   any Google Benchmark flag works
#include <skillvec/detail/thread_pool.hpp>
#include <skillvec/nn/detail/gemm.hpp>

#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#if defined(SKILLVEC_BENCH_OPENBLAS)
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

using skillvec::nn::detail::trans;

enum class op { fwd, bwd, wgt };
enum class impl { skillvec, openblas };

struct problem {
    trans ta, tb;
    std::size_t M, N, K; // of the gemm call
    float beta;
};

/// The gemm call the model makes for `o` on a linear layer [N, K] over `rows` rows.
problem make(op o, std::size_t rows, std::size_t N, std::size_t K) {
    switch (o) {
    case op::fwd: return {trans::n, trans::t, rows, N, K, 0.0f};
    case op::bwd: return {trans::n, trans::n, rows, K, N, 0.0f};
    default: return {trans::t, trans::n, N, K, rows, 1.0f};
    }
}

std::vector<float> random(std::size_t n, std::uint64_t seed) {
    std::vector<float> v(n);
    for (auto& x : v) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x = static_cast<float>(static_cast<double>(seed >> 40) * 0x1p-24 - 0.5);
    }
    return v;
}

skillvec::detail::thread_pool& pool2() {
    static skillvec::detail::thread_pool p(2);
    return p;
}

void run(benchmark::State& state, problem p, impl which, unsigned threads) {
    // Stored shapes: A is [M,K] or [K,M], B is [K,N] or [N,K], C is [M,N]; all packed (ld = cols).
    const std::size_t lda = p.ta == trans::n ? p.K : p.M, ldb = p.tb == trans::n ? p.N : p.K, ldc = p.N;
    auto A = random(p.M * p.K, 1), B = random(p.K * p.N, 2), C = random(p.M * p.N, 3);
    skillvec::detail::thread_pool* pool = threads > 1 ? &pool2() : nullptr;
#if defined(SKILLVEC_BENCH_OPENBLAS)
    if (which == impl::openblas) openblas_set_num_threads(static_cast<int>(threads));
#endif
    for (auto _ : state) {
        if (which == impl::skillvec) {
            skillvec::nn::detail::gemm<float>(p.ta, p.tb, p.M, p.N, p.K, 1.0f, A.data(), lda, B.data(), ldb, p.beta,
                                              C.data(), ldc, pool);
        } else {
#if defined(SKILLVEC_BENCH_OPENBLAS)
            cblas_sgemm(CblasRowMajor, p.ta == trans::n ? CblasNoTrans : CblasTrans,
                        p.tb == trans::n ? CblasNoTrans : CblasTrans, static_cast<int>(p.M), static_cast<int>(p.N),
                        static_cast<int>(p.K), 1.0f, A.data(), static_cast<int>(lda), B.data(), static_cast<int>(ldb),
                        p.beta, C.data(), static_cast<int>(ldc));
#endif
        }
        benchmark::DoNotOptimize(C.data());
        benchmark::ClobberMemory();
    }
    state.counters["GFLOPS"] = benchmark::Counter(2.0 * static_cast<double>(p.M * p.N * p.K),
                                                  benchmark::Counter::kIsIterationInvariantRate,
                                                  benchmark::Counter::kIs1000);
}

} // namespace

int main(int argc, char** argv) {
    const std::pair<std::size_t, std::size_t> layers[] = {{288, 96}, {96, 96}, {384, 96}, {96, 384}, {512, 96}};
    std::vector<impl> impls = {impl::skillvec};
#if defined(SKILLVEC_BENCH_OPENBLAS)
    impls.push_back(impl::openblas);
#endif
    for (std::size_t rows : {std::size_t{1024}, std::size_t{16}})
        for (auto [N, K] : layers)
            for (op o : {op::fwd, op::bwd, op::wgt})
                for (unsigned threads : {1u, 2u})
                    for (impl which : impls) {
                        const problem p = make(o, rows, N, K);
                        const std::string name = std::string(o == op::fwd ? "fwd" : o == op::bwd ? "bwd" : "wgt") + "/" +
                                                 (which == impl::skillvec ? "skillvec" : "openblas") +
                                                 "/M:" + std::to_string(p.M) + "/N:" + std::to_string(p.N) +
                                                 "/K:" + std::to_string(p.K) + "/threads:" + std::to_string(threads);
                        benchmark::RegisterBenchmark(name.c_str(), run, p, which, threads)->UseRealTime();
                    }
    // Attention runs per head on one thread (the heads are what is parallel), so threads:1 only.
    for (const problem& p : {problem{trans::n, trans::t, 64, 64, 24, 0.0f}, problem{trans::n, trans::n, 64, 24, 64, 0.0f},
                             problem{trans::t, trans::n, 64, 24, 64, 0.0f}})
        for (impl which : impls) {
            const std::string name = std::string("attn/") + (which == impl::skillvec ? "skillvec" : "openblas") + "/" +
                                     (p.ta == trans::t ? "T" : "N") + (p.tb == trans::t ? "T" : "N") +
                                     "/M:" + std::to_string(p.M) + "/N:" + std::to_string(p.N) +
                                     "/K:" + std::to_string(p.K) + "/threads:1";
            benchmark::RegisterBenchmark(name.c_str(), run, p, which, 1u)->UseRealTime();
        }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
