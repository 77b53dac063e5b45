// Intra-op threads per rank. See Note [Threads per rank].
#pragma once

#include <string>

#include "kr/core/json.hpp"

namespace kr::train {

struct ThreadSettings {
  int intra_op = 1;
  int openblas = 0;       // as reported by OpenBLAS after setting; 0 when OpenBLAS is absent
  std::string source;     // "--threads", "SLURM_CPUS_PER_TASK", "affinity"
  std::string blas;       // OpenBLAS config string, or "not OpenBLAS"
  std::string allocator;  // "tcmalloc" or "glibc malloc"
  int onednn_isa = -1;    // dnnl_get_effective_cpu_isa(), -1 when unknown
  Json to_json() const;
};

// Chooses and applies the thread count: `requested` > 0 wins, else SLURM_CPUS_PER_TASK,
// else the CPUs this process may run on divided among `local_ranks` when the process
// is not bound. Sets LibTorch's intra-op threads and OpenBLAS's threads alike.
ThreadSettings configure_threads(int requested, int local_ranks);

// CPUs in this process's affinity mask.
int affinity_cpus();

}  // namespace kr::train
