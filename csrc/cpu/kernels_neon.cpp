// The neon kernel table; compiler flags for this file are set in CMakeLists.txt.
#define QUANTA_LEVEL ::quanta::cpu::Level::Neon
#define QUANTA_LEVEL_NS neon
#define QUANTA_KERNELS_FN kernels_neon
#include "cpu/kernels_impl.inc"
