// MPI start-up and shutdown, and facts about the job layout.
#pragma once

#include <string>

namespace kr::comm {

class MpiRuntime {
 public:
  // MPI_Init_thread asking for MPI_THREAD_FUNNELED (only the main thread calls MPI);
  // a lower provided level is an error.
  MpiRuntime(int* argc, char*** argv);
  ~MpiRuntime();  // MPI_Finalize unless already finalized
  MpiRuntime(const MpiRuntime&) = delete;
  MpiRuntime& operator=(const MpiRuntime&) = delete;

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const std::string& hostname() const { return hostname_; }
  void finalize();

 private:
  int world_rank_ = 0;
  int world_size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  std::string hostname_;
  bool finalized_ = false;
};

}  // namespace kr::comm
