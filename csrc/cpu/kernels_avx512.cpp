// The avx512 kernel table; compiler flags for this file are set in CMakeLists.txt.
#define QUANTA_LEVEL ::quanta::cpu::Level::Avx512
#define QUANTA_LEVEL_NS avx512
#define QUANTA_KERNELS_FN kernels_avx512
#include "cpu/kernels_impl.inc"
