#include "kr/train/threads.hpp"

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <torch/torch.h>

#include <cstdlib>

namespace kr::train {

// Note [Threads per rank]
// LibTorch picks one intra-op thread here unless told, and torch::set_num_threads
// does not reach OpenBLAS, which keeps its own pool: both are set to the same
// count. The count derives from the affinity mask, not the node's core count:
// `mpirun -n 1` binds its rank to one core, so "1 rank x 2 threads" needs
// `--bind-to none`, which the runner and the benchmarks pass.

int affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
  return std::max(1, CPU_COUNT(&set));
}

Json ThreadSettings::to_json() const {
  return Json{{"intra_op", intra_op}, {"openblas", openblas},     {"source", source},
              {"blas", blas},         {"onednn_isa", onednn_isa}, {"allocator", allocator}};
}

ThreadSettings configure_threads(int requested, int local_ranks) {
  ThreadSettings settings;
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  const int allowed = affinity_cpus();
  if (requested > 0) {
    settings.intra_op = requested;
    settings.source = "--threads";
  } else if (const char* slurm = std::getenv("SLURM_CPUS_PER_TASK");
             slurm && std::atoi(slurm) > 0) {
    settings.intra_op = std::atoi(slurm);
    settings.source = "SLURM_CPUS_PER_TASK";
  } else {
    const bool bound = allowed < online;
    settings.intra_op = bound ? allowed : std::max(1, allowed / std::max(1, local_ranks));
    settings.source = bound ? "affinity (bound)" : "affinity / local ranks";
  }
  torch::set_num_threads(settings.intra_op);

  using SetThreads = void (*)(int);
  using GetThreads = int (*)();
  using GetConfig = char* (*)();
  auto set_threads = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  auto get_threads = reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  auto get_config = reinterpret_cast<GetConfig>(dlsym(RTLD_DEFAULT, "openblas_get_config"));
  if (set_threads && get_threads) {
    set_threads(settings.intra_op);
    settings.openblas = get_threads();
    settings.blas = get_config ? get_config() : "OpenBLAS";
  } else {
    settings.blas = "not OpenBLAS";
  }
  // Note [Allocator] (src/CMakeLists.txt): tcmalloc exports tc_malloc.
  settings.allocator = dlsym(RTLD_DEFAULT, "tc_malloc") ? "tcmalloc" : "glibc malloc";
  using GetIsa = int (*)();
  if (auto get_isa = reinterpret_cast<GetIsa>(dlsym(RTLD_DEFAULT, "dnnl_get_effective_cpu_isa"))) {
    settings.onednn_isa = get_isa();
  }
  return settings;
}

}  // namespace kr::train
