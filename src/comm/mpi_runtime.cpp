#include "kr/comm/mpi_runtime.hpp"

#include <mpi.h>
#include <unistd.h>

#include "kr/core/error.hpp"

namespace kr::comm {

MpiRuntime::MpiRuntime(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (provided < MPI_THREAD_FUNNELED) {
      throw Error("MPI provides thread level " + std::to_string(provided) +
                  ", kr needs MPI_THREAD_FUNNELED (only the main thread calls MPI)");
    }
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
  MPI_Comm local = MPI_COMM_NULL;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank_, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &local_rank_);
  MPI_Comm_size(local, &local_size_);
  MPI_Comm_free(&local);
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  hostname_ = name;
}

MpiRuntime::~MpiRuntime() {
  finalize();
}

void MpiRuntime::finalize() {
  if (finalized_) return;
  finalized_ = true;
  int already = 0;
  MPI_Finalized(&already);
  if (!already) MPI_Finalize();
}

}  // namespace kr::comm
