// The avx-vnni kernel table: avx2's code with vpdpbusd on ymm where it sums bytes; compiler flags for this
// file are set in CMakeLists.txt.
#define QUANTA_LEVEL ::quanta::cpu::Level::AvxVnni
#define QUANTA_LEVEL_NS avx_vnni
#define QUANTA_KERNELS_FN kernels_avx_vnni
#include "cpu/kernels_impl.inc"
