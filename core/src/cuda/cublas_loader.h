// cuBLAS and cuBLASLt are loaded at run time, when the first GPU context is made, not linked:
// a build with the CUDA backend (and its packages) starts on machines without them — a CPU-only
// workstation needs no CUDA library at all, since the CUDA runtime is linked statically — and a
// GPU run without them says how to get them. cublas_loader.cpp defines the cuBLAS functions the
// backend calls, each forwarding to the loaded library.
#pragma once

#include <string>

namespace lwm::cuda {

// Loads libcublasLt and libcublas of the cuBLAS major version this build was compiled against
// (once per process). Returns an empty string when they are loaded, else why not and what to
// install.
const std::string& load_cublas();

}  // namespace lwm::cuda
