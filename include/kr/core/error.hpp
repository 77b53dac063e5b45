// Errors and exit codes shared by every layer.
#pragma once

#include <stdexcept>
#include <string>

namespace kr {

// Documented process exit codes (README "Exit codes"). Slurm scripts rely on
// `preempted` to requeue a job.
namespace exit_code {
constexpr int ok = 0;
constexpr int failure = 1;
constexpr int usage = 2;
constexpr int preempted = 75;  // EX_TEMPFAIL: checkpoint written, run again to resume
}  // namespace exit_code

// A runtime failure whose message already names the file, rank or step involved.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad command line or configuration: exit code 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

}  // namespace kr
