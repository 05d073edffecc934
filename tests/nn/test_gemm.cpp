// skillvec::nn::detail::gemm against a naive double-accumulated reference.
#include <skillvec/detail/thread_pool.hpp>
#include <skillvec/nn/detail/gemm.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

namespace {

using skillvec::nn::detail::gemm;
using skillvec::nn::detail::trans;

std::uint64_t mix(std::uint64_t& s) {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/// Uniform in [-1, 1), or a small integer in [-3, 3] when `integers` (so float sums are exact).
double draw(std::uint64_t& s, bool integers) {
    if (integers) return static_cast<double>(static_cast<int>(mix(s) % 7) - 3);
    return static_cast<double>(mix(s) >> 11) * 0x1p-52 - 1.0;
}

/// A rows x cols matrix with row stride ld; the padding holds `pad`, so a read of it (NaN) or a
/// write to it (a changed sentinel) shows up.
template <class T> struct matrix {
    std::size_t rows, cols, ld;
    std::vector<T> v;
    matrix(std::size_t r, std::size_t c, std::size_t pad_cols, T pad)
        : rows(r), cols(c), ld(c + pad_cols), v(std::max<std::size_t>(r * (c + pad_cols), 1), pad) {}
    T& operator()(std::size_t i, std::size_t j) { return v[i * ld + j]; }
    T operator()(std::size_t i, std::size_t j) const { return v[i * ld + j]; }
    void fill(std::uint64_t& s, bool integers) {
        for (std::size_t i = 0; i < rows; ++i)
            for (std::size_t j = 0; j < cols; ++j) (*this)(i, j) = static_cast<T>(draw(s, integers));
    }
};

struct gemm_case {
    trans ta, tb;
    std::size_t M, N, K;
    double alpha, beta;
    std::size_t pad = 0;    // extra columns on A, B and C
    bool integers = false;  // small-integer data: the float result must be exact
    bool nan_c = false;     // C starts as NaN (only meaningful with beta == 0)
    skillvec::detail::thread_pool* pool = nullptr;
    std::uint64_t seed = 1;
};

std::string describe(const gemm_case& c) {
    return std::string(c.ta == trans::t ? "T" : "N") + (c.tb == trans::t ? "T" : "N") + " M=" + std::to_string(c.M) +
           " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " alpha=" + std::to_string(c.alpha) +
           " beta=" + std::to_string(c.beta) + " pad=" + std::to_string(c.pad) + (c.pool ? " pool" : "") +
           (c.integers ? " integers" : "");
}

/// Runs one case for T and checks every element of C (to a bound of the rounding error, or exactly
/// for integer data) and that no padding element changed.
template <class T> void check(const gemm_case& c) {
    INFO(describe(c));
    const T pad_value = std::numeric_limits<T>::quiet_NaN();
    const T c_pad = T(12345);
    std::uint64_t s = c.seed;
    // op(A) is M x K: A is stored [M,K] or [K,M]; likewise B.
    matrix<T> A(c.ta == trans::n ? c.M : c.K, c.ta == trans::n ? c.K : c.M, c.pad, pad_value);
    matrix<T> B(c.tb == trans::n ? c.K : c.N, c.tb == trans::n ? c.N : c.K, c.pad, pad_value);
    matrix<T> C(c.M, c.N, c.pad, c_pad);
    A.fill(s, c.integers);
    B.fill(s, c.integers);
    if (c.nan_c) {
        for (std::size_t i = 0; i < c.M; ++i)
            for (std::size_t j = 0; j < c.N; ++j) C(i, j) = std::numeric_limits<T>::quiet_NaN();
    } else {
        C.fill(s, c.integers);
    }
    const matrix<T> C0 = C;

    gemm<T>(c.ta, c.tb, c.M, c.N, c.K, static_cast<T>(c.alpha), A.v.data(), A.ld, B.v.data(), B.ld,
            static_cast<T>(c.beta), C.v.data(), C.ld, c.pool);

    auto a = [&](std::size_t i, std::size_t k) { return static_cast<double>(c.ta == trans::n ? A(i, k) : A(k, i)); };
    auto b = [&](std::size_t k, std::size_t j) { return static_cast<double>(c.tb == trans::n ? B(k, j) : B(j, k)); };
    const double u = std::is_same_v<T, float> ? 0x1p-24 : 0x1p-53;
    std::size_t bad = 0;
    for (std::size_t i = 0; i < c.M; ++i) {
        for (std::size_t j = 0; j < c.N; ++j) {
            double sum = 0, mag = 0;
            for (std::size_t k = 0; k < c.K; ++k) {
                sum += a(i, k) * b(k, j);
                mag += std::abs(a(i, k) * b(k, j));
            }
            const double c0 = c.beta == 0 ? 0.0 : static_cast<double>(C0(i, j));
            const double want = c.alpha * sum + c.beta * c0;
            const double got = static_cast<double>(C(i, j));
            // Rounding of a K-term sum plus the alpha/beta steps: (K + 4) u of the magnitudes, far below
            // what a wrong index or a dropped term would change.
            // For double the reference itself rounds as much, hence the factor 2.
            const double tol = c.integers ? 0.0
                                          : (std::is_same_v<T, float> ? 1.0 : 2.0) * (static_cast<double>(c.K) + 4) * u *
                                                (std::abs(c.alpha) * mag + std::abs(c.beta * c0));
            if (!(std::abs(got - want) <= tol)) {
                if (bad++ < 5) FAIL_CHECK("C(" << i << "," << j << ") = " << got << ", want " << want << " (tol " << tol << ")");
            }
        }
    }
    CHECK(bad == 0);
    // Padding: C's untouched, bit for bit.
    std::size_t touched = 0;
    for (std::size_t i = 0; i < c.M; ++i)
        for (std::size_t j = c.N; j < C.ld; ++j) touched += C(i, j) != c_pad;
    CHECK(touched == 0);
}

constexpr trans both[] = {trans::n, trans::t};

} // namespace

TEST_CASE("gemm: every transposition, odd and edge sizes, exact on integers", "[nn][gemm]") {
    const std::size_t sizes[] = {1, 2, 3, 5, 7, 13, 17, 31, 33, 97};
    std::uint64_t seed = 7;
    for (trans ta : both)
        for (trans tb : both)
            for (std::size_t M : sizes)
                for (std::size_t N : sizes)
                    for (std::size_t K : {std::size_t{1}, std::size_t{3}, std::size_t{17}, std::size_t{97}}) {
                        gemm_case c{ta, tb, M, N, K, 1.0, 1.0};
                        c.integers = true;
                        c.pad = (M + N + K) % 3;
                        c.seed = ++seed;
                        check<float>(c);
                    }
}

TEST_CASE("gemm: alpha, beta, NaN in C with beta 0, padding", "[nn][gemm]") {
    std::uint64_t seed = 100;
    for (trans ta : both)
        for (trans tb : both)
            for (auto [M, N, K] : {std::array<std::size_t, 3>{7, 13, 5}, {33, 31, 17}, {97, 17, 300}, {13, 97, 513}}) {
                for (double alpha : {1.0, -0.75, 2.0})
                    for (double beta : {0.0, 1.0, -0.5}) {
                        gemm_case c{ta, tb, M, N, K, alpha, beta};
                        c.pad = 5;
                        c.nan_c = beta == 0.0;
                        c.seed = ++seed;
                        check<float>(c);
                    }
                // Exact with alpha = 2, beta = -1 on integers too (both scale exactly).
                gemm_case e{ta, tb, M, N, K, 2.0, -1.0};
                e.integers = true;
                e.pad = 3;
                e.seed = ++seed;
                check<float>(e);
            }
}

TEST_CASE("gemm: empty dimensions", "[nn][gemm]") {
    for (trans ta : both)
        for (trans tb : both) {
            // K == 0: C = beta * C, and beta == 0 clears NaN.
            for (double beta : {0.0, 1.0, 3.0}) {
                gemm_case c{ta, tb, 5, 7, 0, 1.0, beta};
                c.nan_c = beta == 0.0;
                c.pad = 2;
                check<float>(c);
                check<double>(c);
            }
            // M == 0 or N == 0: nothing is touched (null pointers are fine).
            gemm<float>(ta, tb, 0, 5, 3, 1.0f, nullptr, 3, nullptr, 5, 0.0f, nullptr, 5);
            gemm<float>(ta, tb, 5, 0, 3, 1.0f, nullptr, 3, nullptr, 1, 0.0f, nullptr, 1);
            // alpha == 0: A and B are not read (NaN there must not leak).
            float a[6], b[6], cc[4] = {1, 2, 3, 4};
            for (float& x : a) x = std::numeric_limits<float>::quiet_NaN();
            for (float& x : b) x = std::numeric_limits<float>::quiet_NaN();
            gemm<float>(ta, tb, 2, 2, 3, 0.0f, a, ta == trans::n ? 3 : 2, b, tb == trans::n ? 2 : 3, 2.0f, cc, 2);
            CHECK(cc[0] == 2);
            CHECK(cc[3] == 8);
        }
}

TEST_CASE("gemm: thread pool gives the same bits as one thread", "[nn][gemm]") {
    skillvec::detail::thread_pool pool(2);
    std::uint64_t seed = 500;
    for (trans ta : both)
        for (trans tb : both)
            for (auto [M, N, K] : {std::array<std::size_t, 3>{1024, 96, 96}, {96, 512, 97}, {301, 299, 53}, {7, 1000, 300}}) {
                gemm_case c{ta, tb, M, N, K, 1.0, 0.0};
                c.nan_c = true;
                c.pad = 1;
                c.seed = ++seed;
                c.pool = &pool;
                check<float>(c);
                // Bit-identical to the serial result.
                std::uint64_t s = c.seed;
                matrix<float> A(ta == trans::n ? M : K, ta == trans::n ? K : M, 0, 0.0f);
                matrix<float> B(tb == trans::n ? K : N, tb == trans::n ? N : K, 0, 0.0f);
                A.fill(s, false);
                B.fill(s, false);
                std::vector<float> c1(M * N), c2(M * N);
                gemm<float>(ta, tb, M, N, K, 1.0f, A.v.data(), A.ld, B.v.data(), B.ld, 0.0f, c1.data(), N);
                gemm<float>(ta, tb, M, N, K, 1.0f, A.v.data(), A.ld, B.v.data(), B.ld, 0.0f, c2.data(), N, &pool);
                CHECK(c1 == c2);
            }
}

TEST_CASE("gemm: the model's shapes (forward NT, backward NN, weight TN with beta 1)", "[nn][gemm]") {
    skillvec::detail::thread_pool pool(2);
    std::uint64_t seed = 900;
    const std::size_t M = 1024;
    for (auto [N, K] : {std::array<std::size_t, 2>{288, 96}, {96, 96}, {384, 96}, {96, 384}, {512, 96}}) {
        for (skillvec::detail::thread_pool* p : {static_cast<skillvec::detail::thread_pool*>(nullptr), &pool}) {
            gemm_case fwd{trans::n, trans::t, M, N, K, 1.0, 0.0};
            fwd.nan_c = true;
            fwd.pool = p;
            fwd.seed = ++seed;
            check<float>(fwd);
            gemm_case bwd{trans::n, trans::n, M, K, N, 1.0, 0.0};
            bwd.pool = p;
            bwd.seed = ++seed;
            check<float>(bwd);
            gemm_case wgt{trans::t, trans::n, N, K, M, 1.0, 1.0};
            wgt.pool = p;
            wgt.seed = ++seed;
            check<float>(wgt);
        }
    }
}

TEST_CASE("gemm: attention's strided per-head products", "[nn][gemm]") {
    // T x T x head_dim with the heads interleaved in a [T, 3*width] buffer: lda = ldb = 288.
    std::uint64_t seed = 1300;
    for (trans ta : both)
        for (trans tb : both)
            for (std::size_t T : {1, 2, 17, 64})
                for (auto [M, N, K] : {std::array<std::size_t, 3>{T, T, 24}, {T, 24, T}}) {
                    gemm_case c{ta, tb, M, N, K, 0.2041241452, 0.0};
                    c.pad = 288 - 24;
                    c.nan_c = true;
                    c.seed = ++seed;
                    check<float>(c);
                }
}

TEST_CASE("gemm: double is near-exact", "[nn][gemm]") {
    std::uint64_t seed = 2000;
    for (trans ta : both)
        for (trans tb : both)
            for (auto [M, N, K] : {std::array<std::size_t, 3>{1, 1, 1}, {7, 13, 5}, {33, 17, 97}, {64, 24, 64}}) {
                for (double beta : {0.0, 1.0, -0.5}) {
                    gemm_case c{ta, tb, M, N, K, -1.25, beta};
                    c.pad = 2;
                    c.nan_c = beta == 0.0;
                    c.seed = ++seed;
                    check<double>(c);
                }
            }
}
