#pragma once
/// \file
/// Element types of stored tensors and the scalar conversions between them.
///
/// skillvec stores tensors in any safetensors dtype but computes only on the four float kinds
/// (f16, bf16, f32, f64). Arithmetic is always done in f32 (reductions accumulate in f64), so the
/// conversions here are the only places where precision is lost, and they round to nearest even.
/// NaN stays NaN (quieted, sign and upper payload kept, exactly as x86 F16C does) and Inf stays Inf.

#include <skillvec/core/config.hpp>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace skillvec {

/// Element type of a stored tensor. The spelling follows the safetensors format.
enum class dtype : std::uint8_t {
    boolean, u8, i8, i16, u16, i32, u32, i64, u64, // integers and masks: passed through, never computed on
    f16, bf16, f32, f64,                            // float kinds: computed on in f32
    c64,                                            // complex64: passed through
    f8_e5m2, f8_e4m3, f8_e8m0, f6_e2m3, f6_e3m2, f4 // sub-byte and 8-bit floats: passed through
};

/// All dtypes, in declaration order (for tests and tables).
inline constexpr dtype all_dtypes[] = {
    dtype::boolean, dtype::u8,      dtype::i8,      dtype::i16,     dtype::u16,     dtype::i32,     dtype::u32,
    dtype::i64,     dtype::u64,     dtype::f16,     dtype::bf16,    dtype::f32,     dtype::f64,     dtype::c64,
    dtype::f8_e5m2, dtype::f8_e4m3, dtype::f8_e8m0, dtype::f6_e2m3, dtype::f6_e3m2, dtype::f4};

/// Bits per element (safetensors allows sub-byte types; a tensor's bit count must be a whole byte count).
[[nodiscard]] constexpr std::size_t bits_of(dtype t) noexcept {
    switch (t) {
    case dtype::boolean: case dtype::u8: case dtype::i8: case dtype::f8_e5m2: case dtype::f8_e4m3:
    case dtype::f8_e8m0: return 8;
    case dtype::i16: case dtype::u16: case dtype::f16: case dtype::bf16: return 16;
    case dtype::i32: case dtype::u32: case dtype::f32: return 32;
    case dtype::i64: case dtype::u64: case dtype::f64: case dtype::c64: return 64;
    case dtype::f6_e2m3: case dtype::f6_e3m2: return 6;
    case dtype::f4: return 4;
    }
    return 0;
}

/// True for the dtypes skillvec computes on: f16, bf16, f32 and f64. Every other dtype passes through.
[[nodiscard]] constexpr bool is_arithmetic(dtype t) noexcept {
    return t == dtype::f16 || t == dtype::bf16 || t == dtype::f32 || t == dtype::f64;
}

/// Name as safetensors spells it ("F32", "BF16", ...).
[[nodiscard]] constexpr std::string_view name_of(dtype t) noexcept {
    switch (t) {
    case dtype::boolean: return "BOOL";
    case dtype::u8: return "U8";
    case dtype::i8: return "I8";
    case dtype::i16: return "I16";
    case dtype::u16: return "U16";
    case dtype::i32: return "I32";
    case dtype::u32: return "U32";
    case dtype::i64: return "I64";
    case dtype::u64: return "U64";
    case dtype::f16: return "F16";
    case dtype::bf16: return "BF16";
    case dtype::f32: return "F32";
    case dtype::f64: return "F64";
    case dtype::c64: return "C64";
    case dtype::f8_e5m2: return "F8_E5M2";
    case dtype::f8_e4m3: return "F8_E4M3";
    case dtype::f8_e8m0: return "F8_E8M0";
    case dtype::f6_e2m3: return "F6_E2M3";
    case dtype::f6_e3m2: return "F6_E3M2";
    case dtype::f4: return "F4";
    }
    return "?";
}

/// Parses a dtype name. Accepts the safetensors spelling ("BF16") and lower case ("bf16").
[[nodiscard]] constexpr std::optional<dtype> parse_dtype(std::string_view s) noexcept {
    for (dtype t : all_dtypes) {
        std::string_view n = name_of(t);
        if (n.size() != s.size()) continue;
        bool same = true;
        for (std::size_t i = 0; i < n.size() && same; ++i) {
            char c = s[i];
            if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
            same = (c == n[i]);
        }
        if (same) return t;
    }
    return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Scalar conversions. These are the reference: the SIMD converters in backend/cpu must agree with
// them bit for bit, and tests check both over every 16-bit pattern. They are SKILLVEC_HD: the
// Thrust backend converts with these same functions inside its kernels, on the GPU too.
// ---------------------------------------------------------------------------------------------

/// bf16 bits -> f32. Exact (bf16 is the upper half of an f32).
[[nodiscard]] SKILLVEC_HD constexpr float bf16_to_f32(std::uint16_t h) noexcept {
    return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16);
}

/// f32 -> bf16 bits, round to nearest even. NaN becomes a quiet NaN with the same sign and upper payload.
[[nodiscard]] SKILLVEC_HD constexpr std::uint16_t f32_to_bf16(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
    // Adding 0x7FFF plus the lowest kept bit rounds half to even; a carry into the exponent is the
    // correct result (it rounds up to the next binade, or to Inf past the largest finite bf16).
    return static_cast<std::uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

/// f16 bits -> f32. Exact for every finite value (subnormals included); NaN is quieted like F16C's vcvtph2ps.
[[nodiscard]] SKILLVEC_HD constexpr float f16_to_f32(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1Fu;
    const std::uint32_t man = h & 0x3FFu;
    if (exp == 0x1F) return std::bit_cast<float>(sign | 0x7F800000u | (man << 13) | (man ? 0x00400000u : 0u));
    if (exp == 0) {
        // Subnormal or zero: man * 2^-24, exact in f32.
        const float mag = static_cast<float>(man) * 5.9604644775390625e-8f;
        return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(mag));
    }
    return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (man << 13));
}

/// f32 -> f16 bits, round to nearest even, overflow to Inf, gradual underflow to subnormals.
/// NaN becomes a quiet NaN with the same sign and upper payload, as F16C's vcvtps2ph does.
[[nodiscard]] SKILLVEC_HD constexpr std::uint16_t f32_to_f16(float f) noexcept {
    const std::uint32_t u = std::bit_cast<std::uint32_t>(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u) return static_cast<std::uint16_t>(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    if (a >= 0x477FF000u) return static_cast<std::uint16_t>(sign | 0x7C00u); // >= 65520 rounds to Inf
    if (a < 0x38800000u) {
        // Below the smallest normal f16 (2^-14): add 0.5, whose ulp is 2^-24, the f16 subnormal step,
        // and let the FPU round to nearest even. The low mantissa bits are then the f16 subnormal.
        const float r = std::bit_cast<float>(a) + 0.5f;
        return static_cast<std::uint16_t>(sign | (std::bit_cast<std::uint32_t>(r) - 0x3F000000u));
    }
    // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits half to even.
    const std::uint32_t r = (a + 0xC8000FFFu + ((a >> 13) & 1u)) >> 13;
    return static_cast<std::uint16_t>(sign | r);
}

/// bf16 storage type: a 16-bit pattern with explicit conversions (no implicit arithmetic).
struct bfloat16 {
    std::uint16_t bits = 0;
    [[nodiscard]] static constexpr bfloat16 from(float f) noexcept { return {f32_to_bf16(f)}; }
    [[nodiscard]] constexpr explicit operator float() const noexcept { return bf16_to_f32(bits); }
    friend constexpr bool operator==(bfloat16, bfloat16) = default;
};

/// IEEE binary16 storage type: a 16-bit pattern with explicit conversions.
struct float16 {
    std::uint16_t bits = 0;
    [[nodiscard]] static constexpr float16 from(float f) noexcept { return {f32_to_f16(f)}; }
    [[nodiscard]] constexpr explicit operator float() const noexcept { return f16_to_f32(bits); }
    friend constexpr bool operator==(float16, float16) = default;
};

/// The C++ storage type of an element of each dtype that skillvec can read and write as numbers.
template <dtype D> struct storage;
template <> struct storage<dtype::f32> { using type = float; };
template <> struct storage<dtype::f64> { using type = double; };
template <> struct storage<dtype::bf16> { using type = bfloat16; };
template <> struct storage<dtype::f16> { using type = float16; };
template <> struct storage<dtype::u8> { using type = std::uint8_t; };
template <> struct storage<dtype::i8> { using type = std::int8_t; };
template <> struct storage<dtype::i16> { using type = std::int16_t; };
template <> struct storage<dtype::u16> { using type = std::uint16_t; };
template <> struct storage<dtype::i32> { using type = std::int32_t; };
template <> struct storage<dtype::u32> { using type = std::uint32_t; };
template <> struct storage<dtype::i64> { using type = std::int64_t; };
template <> struct storage<dtype::u64> { using type = std::uint64_t; };
template <dtype D> using storage_t = typename storage<D>::type;

/// The dtype whose storage type is T (float -> f32, bfloat16 -> bf16, ...).
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr dtype value = dtype::f32; };
template <> struct dtype_of<double> { static constexpr dtype value = dtype::f64; };
template <> struct dtype_of<bfloat16> { static constexpr dtype value = dtype::bf16; };
template <> struct dtype_of<float16> { static constexpr dtype value = dtype::f16; };
template <> struct dtype_of<std::uint8_t> { static constexpr dtype value = dtype::u8; };
template <> struct dtype_of<std::int8_t> { static constexpr dtype value = dtype::i8; };
template <> struct dtype_of<std::int16_t> { static constexpr dtype value = dtype::i16; };
template <> struct dtype_of<std::uint16_t> { static constexpr dtype value = dtype::u16; };
template <> struct dtype_of<std::int32_t> { static constexpr dtype value = dtype::i32; };
template <> struct dtype_of<std::uint32_t> { static constexpr dtype value = dtype::u32; };
template <> struct dtype_of<std::int64_t> { static constexpr dtype value = dtype::i64; };
template <> struct dtype_of<std::uint64_t> { static constexpr dtype value = dtype::u64; };
template <class T> inline constexpr dtype dtype_of_v = dtype_of<T>::value;

/// Reads element i of a float-kind buffer as f32 (f64 is rounded to nearest).
[[nodiscard]] SKILLVEC_HD inline float load_as_f32(dtype t, const std::byte* base, std::size_t i) noexcept {
    switch (t) {
    case dtype::f32: { float v; __builtin_memcpy(&v, base + 4 * i, 4); return v; }
    case dtype::f64: { double v; __builtin_memcpy(&v, base + 8 * i, 8); return static_cast<float>(v); }
    case dtype::bf16: { std::uint16_t v; __builtin_memcpy(&v, base + 2 * i, 2); return bf16_to_f32(v); }
    case dtype::f16: { std::uint16_t v; __builtin_memcpy(&v, base + 2 * i, 2); return f16_to_f32(v); }
    default: return 0.0f;
    }
}

/// Writes an f32 value as element i of a float-kind buffer, rounding to nearest even.
SKILLVEC_HD inline void store_from_f32(dtype t, std::byte* base, std::size_t i, float x) noexcept {
    switch (t) {
    case dtype::f32: __builtin_memcpy(base + 4 * i, &x, 4); break;
    case dtype::f64: { double v = x; __builtin_memcpy(base + 8 * i, &v, 8); break; }
    case dtype::bf16: { std::uint16_t v = f32_to_bf16(x); __builtin_memcpy(base + 2 * i, &v, 2); break; }
    case dtype::f16: { std::uint16_t v = f32_to_f16(x); __builtin_memcpy(base + 2 * i, &v, 2); break; }
    default: break;
    }
}

} // namespace skillvec
