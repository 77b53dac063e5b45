#include "kr/steps/step.hpp"

#include "kr/core/error.hpp"
#include "kr/core/sha256.hpp"

namespace kr::steps {

std::string Context::under_workdir(const std::string& given, const std::string& fallback) const {
  return given.empty() ? workdir() + "/" + fallback : given;
}

int run_nested_step(Context& parent, comm::Communicator& comm, const std::string& name,
                    const std::vector<std::string>& args) {
  const Step* step = find_step(name);
  if (!step) throw Error("no step named '" + name + "'");
  if (!parent.parse_options) throw Error("nested steps need the cli's option parser");
  StepOptions options = parent.parse_options(*step, args);
  Context context{
      comm,       parent.runtime,       options.values, options.config,     parent.threads,
      step->name, parent.parse_options, options.bound,  options.operational};
  return step->run(context);
}

std::string config_hash(const Context& context, const std::vector<std::string>& extra_ignored) {
  return config_hash(context.config, context.operational, extra_ignored);
}

std::string config_hash(const Json& config, const std::set<std::string>& operational,
                        const std::vector<std::string>& extra_ignored) {
  Json kept = Json::object();
  for (const auto& item : config.items()) {
    if (operational.count(item.key())) continue;
    bool ignored = false;
    for (const auto& name : extra_ignored) ignored = ignored || name == item.key();
    if (!ignored) kept[item.key()] = item.value();
  }
  return sha256_string(kept.dump()).substr(0, 16);
}

}  // namespace kr::steps
