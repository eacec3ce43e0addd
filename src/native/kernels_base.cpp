// The kernels for baseline CPUs (x86-64 SSE2, or any other architecture).
#define SUPERMEL_ISA base
#include "kernels.inc"
