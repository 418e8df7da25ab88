// The neon-i8mm kernel table: neon-dotprod's row kernels, and the prefill GEMM
// on usmmla (FEAT_I8MM, gemm_i8mm_impl.inc); compiler flags for this file are
// set in CMakeLists.txt.
#define QUANTA_LEVEL ::quanta::cpu::Level::NeonI8mm
#define QUANTA_LEVEL_NS neon_i8mm
#define QUANTA_KERNELS_FN kernels_neon_i8mm
#include "cpu/kernels_impl.inc"
