// The avx2 kernel table; compiler flags for this file are set in CMakeLists.txt.
#define QUANTA_LEVEL ::quanta::cpu::Level::Avx2
#define QUANTA_LEVEL_NS avx2
#define QUANTA_KERNELS_FN kernels_avx2
#include "cpu/kernels_impl.inc"
