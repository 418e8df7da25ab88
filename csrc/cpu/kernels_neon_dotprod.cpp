// The neon-dotprod kernel table (armv8.2-a with the dot product extension: sdot
// in the quantized row kernels, qdot_neon_impl.inc); compiler flags for this file
// are set in CMakeLists.txt.
#define QUANTA_LEVEL ::quanta::cpu::Level::NeonDotprod
#define QUANTA_LEVEL_NS neon_dotprod
#define QUANTA_KERNELS_FN kernels_neon_dotprod
#include "cpu/kernels_impl.inc"
