#include "kr/report/results.hpp"

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"

namespace kr::report {

std::string results_path(const std::string& workdir, const std::string& name,
                         const std::string& extension) {
  return workdir + "/results/" + name + "." + extension;
}

void write_results(const std::string& workdir, const std::string& name, const Json& results) {
  make_dirs(workdir + "/results");
  write_file_atomic(results_path(workdir, name), results.dump(2) + "\n");
}

void write_results_csv(const std::string& workdir, const std::string& name,
                       const std::string& csv) {
  make_dirs(workdir + "/results");
  write_file_atomic(results_path(workdir, name, "csv"), csv);
}

Json read_results(const std::string& workdir, const std::string& name) {
  const std::string path = results_path(workdir, name);
  if (!path_exists(path)) return nullptr;
  try {
    return Json::parse(read_file(path));
  } catch (const std::exception& error) {
    throw Error(path + ": cannot parse: " + error.what());
  }
}

}  // namespace kr::report
