// The kernels for x86-64-v3 CPUs (AVX2 + FMA): this file is compiled with -mavx2 -mfma;
// bindings.cpp calls it only when the CPU reports both features.
#define SUPERMEL_ISA avx2
#include "kernels.inc"
