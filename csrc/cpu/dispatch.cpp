// Picks the kernel table at start-up from what the CPU reports (cpuid on x86,
// the kernel's hardware capabilities on aarch64, where NEON is always there).
// QUANTA_CPU=scalar|avx2|avx-vnni|avx512|neon|neon-dotprod|neon-i8mm forces a level.
#include <atomic>
#include <cstdlib>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#include "base/error.h"
#include "cpu/act_formats.h"
#include "cpu/kernels.h"
#include "cpu/panel.h"

namespace quanta::cpu {

// Defined in kernels_<level>.cpp, which exist only for the levels this
// architecture compiles (see CMakeLists.txt).
namespace scalar { const Kernels& kernels_scalar(); }
#if defined(QUANTA_HAVE_AVX2)
namespace avx2 { const Kernels& kernels_avx2(); }
namespace avx_vnni { const Kernels& kernels_avx_vnni(); }
#endif
#if defined(QUANTA_HAVE_AVX512)
namespace avx512 { const Kernels& kernels_avx512(); }
#endif
#if defined(QUANTA_HAVE_NEON)
namespace neon { const Kernels& kernels_neon(); }
namespace neon_dotprod { const Kernels& kernels_neon_dotprod(); }
namespace neon_i8mm { const Kernels& kernels_neon_i8mm(); }
#endif

namespace {

#if defined(__aarch64__)
// The dot product instructions (sdot/udot, armv8.2-a's optional FEAT_DotProd).
bool has_dotprod() {
#if defined(__linux__)
    constexpr unsigned long kHwcapAsimdDp = 1ul << 20;  // HWCAP_ASIMDDP in <asm/hwcap.h>
    return (getauxval(AT_HWCAP) & kHwcapAsimdDp) != 0;
#elif defined(__APPLE__)
    return true;  // every Apple silicon core has it
#else
    return false;
#endif
}

// The int8 matrix multiplies (smmla/usmmla, FEAT_I8MM: Neoverse V1/N2, Cortex-A510/A710 and later, Apple M2).
bool has_i8mm() {
#if defined(__linux__)
    constexpr unsigned long kHwcap2I8mm = 1ul << 13;  // HWCAP2_I8MM in <asm/hwcap.h>
    return has_dotprod() && (getauxval(AT_HWCAP2) & kHwcap2I8mm) != 0;
#elif defined(__APPLE__)
    int on = 0;
    size_t size = sizeof(on);
    return sysctlbyname("hw.optional.arm.FEAT_I8MM", &on, &size, nullptr, 0) == 0 && on != 0;
#else
    return false;
#endif
}
#endif

bool cpu_has(Level level) {
    switch (level) {
        case Level::Scalar: return true;
#if defined(__x86_64__) && defined(__GNUC__)
        case Level::Avx2:
            return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                   __builtin_cpu_supports("f16c");
        case Level::AvxVnni: return cpu_has(Level::Avx2) && __builtin_cpu_supports("avxvnni");
        case Level::Avx512:
            return cpu_has(Level::Avx2) && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                   __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                   __builtin_cpu_supports("avx512vnni");
#endif
#if defined(__aarch64__)
        case Level::Neon: return true;
        case Level::NeonDotprod: return has_dotprod();
        case Level::NeonI8mm: return has_i8mm();
#endif
        default: return false;
    }
}

const Kernels* compiled(Level level) {
    switch (level) {
        case Level::Scalar: return &scalar::kernels_scalar();
#if defined(QUANTA_HAVE_AVX2)
        case Level::Avx2: return &avx2::kernels_avx2();
        case Level::AvxVnni: return &avx_vnni::kernels_avx_vnni();
#endif
#if defined(QUANTA_HAVE_AVX512)
        case Level::Avx512: return &avx512::kernels_avx512();
#endif
#if defined(QUANTA_HAVE_NEON)
        case Level::Neon: return &neon::kernels_neon();
        case Level::NeonDotprod: return &neon_dotprod::kernels_neon_dotprod();
        case Level::NeonI8mm: return &neon_i8mm::kernels_neon_i8mm();
#endif
        default: return nullptr;
    }
}

const Kernels& initial_kernels() {
    if (const char* forced = std::getenv("QUANTA_CPU"); forced && *forced) return kernels_for(level_from_name(forced));
    return kernels_for(available_levels().back());
}

std::atomic<const Kernels*> g_active{nullptr};

}  // namespace

const char* level_name(Level level) {
    switch (level) {
        case Level::Scalar: return "scalar";
        case Level::Avx2: return "avx2";
        case Level::AvxVnni: return "avx-vnni";
        case Level::Avx512: return "avx512";
        case Level::Neon: return "neon";
        case Level::NeonDotprod: return "neon-dotprod";
        case Level::NeonI8mm: return "neon-i8mm";
    }
    return "?";
}

Level level_from_name(const std::string& name) {
    for (Level l : {Level::Scalar, Level::Avx2, Level::AvxVnni, Level::Avx512, Level::Neon, Level::NeonDotprod,
                    Level::NeonI8mm})
        if (name == level_name(l)) return l;
    fail(ErrorKind::InvalidArgument,
         "unknown CPU level '" + name + "' (expected scalar, avx2, avx-vnni, avx512, neon, neon-dotprod or neon-i8mm)");
}

std::vector<Level> available_levels() {
    std::vector<Level> out;
    for (Level l : {Level::Scalar, Level::Neon, Level::NeonDotprod, Level::NeonI8mm, Level::Avx2, Level::AvxVnni,
                    Level::Avx512})
        if (compiled(l) && cpu_has(l)) out.push_back(l);
    return out;
}

const Kernels& kernels_for(Level level) {
    const Kernels* k = compiled(level);
    if (!k) fail(ErrorKind::Unsupported, std::string("CPU level ") + level_name(level) + " is not built for this architecture");
    if (!cpu_has(level)) fail(ErrorKind::Unsupported, std::string("this CPU does not support ") + level_name(level));
    return *k;
}

const Kernels& active_kernels() {
    const Kernels* k = g_active.load(std::memory_order_acquire);
    if (!k) {
        k = &initial_kernels();
        g_active.store(k, std::memory_order_release);
    }
    return *k;
}

void set_active_level(Level level) { g_active.store(&kernels_for(level), std::memory_order_release); }

QuantDotFn quant_dot(const Kernels& k, DType type) {
    switch (type) {
        case DType::Q4_0: return k.dot_q4_0;
        case DType::Q4_1: return k.dot_q4_1;
        case DType::Q5_0: return k.dot_q5_0;
        case DType::Q5_1: return k.dot_q5_1;
        case DType::Q8_0: return k.dot_q8_0;
        case DType::Q4_K: return k.dot_q4_k;
        case DType::Q5_K: return k.dot_q5_k;
        case DType::Q6_K: return k.dot_q6_k;
        default: return nullptr;
    }
}

GemmTileFn gemm_tile(const Kernels& k, DType type) {
    if (act_format_for(type) == ActFormat::None) return nullptr;
    return panel_kind(type) == PanelKind::Super256 ? k.gemm_tile256 : k.gemm_tile32;
}

QuantizeActFn quantize_act(const Kernels& k, DType weight_type) {
    switch (act_format_for(weight_type)) {
        case ActFormat::Paired: return k.quantize_act_paired;
        case ActFormat::Flat: return k.quantize_act_flat;
        default: return nullptr;
    }
}

std::string cpu_features() {
    std::string out;
#if defined(__x86_64__) && defined(__GNUC__)
    const char* names[] = {"sse4.2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq",
                           "avx512vnni", "avx512bf16", "avxvnni"};
    // __builtin_cpu_supports needs string literals, so test them one by one.
    const bool has[] = {
        (bool)__builtin_cpu_supports("sse4.2"),   (bool)__builtin_cpu_supports("avx"),
        (bool)__builtin_cpu_supports("avx2"),     (bool)__builtin_cpu_supports("fma"),
        (bool)__builtin_cpu_supports("f16c"),     (bool)__builtin_cpu_supports("avx512f"),
        (bool)__builtin_cpu_supports("avx512bw"), (bool)__builtin_cpu_supports("avx512vl"),
        (bool)__builtin_cpu_supports("avx512dq"), (bool)__builtin_cpu_supports("avx512vnni"),
        (bool)__builtin_cpu_supports("avx512bf16"), (bool)__builtin_cpu_supports("avxvnni"),
    };
    for (size_t i = 0; i < sizeof has / sizeof has[0]; ++i)
        if (has[i]) out += (out.empty() ? "" : " ") + std::string(names[i]);
#elif defined(__aarch64__)
    out = "neon";
    if (has_dotprod()) out += " dotprod";
    if (has_i8mm()) out += " i8mm";
#endif
    return out;
}

}  // namespace quanta::cpu
