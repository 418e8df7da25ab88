// The scalar kernel table; compiler flags for this file are set in CMakeLists.txt.
#define QUANTA_LEVEL ::quanta::cpu::Level::Scalar
#define QUANTA_LEVEL_NS scalar
#define QUANTA_KERNELS_FN kernels_scalar
#include "cpu/kernels_impl.inc"
