#include "kr/steps/step.hpp"

#include "kr/core/error.hpp"
#include "kr/core/sha256.hpp"

#include <cmath>
#include <iomanip>
#include <sstream>

namespace kr::steps {

namespace {
std::string number_text(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (value == std::floor(value) && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<long long>(value));
  }
  std::ostringstream out;
  if (value == std::floor(value)) out << std::fixed << std::setprecision(0);
  out << value;
  return out.str();
}
}  // namespace

void OptionTable::validate(const po::variables_map& values) const {
  for (const auto& check : checks_) {
    const double value = check.value(values);
    const bool finite = std::isfinite(value);
    if (finite && value >= check.lo && value <= check.hi) continue;
    std::string want;
    if (!finite && std::isinf(check.lo) && std::isinf(check.hi)) {
      want = "a finite number";
    } else if (std::isinf(check.hi)) {
      want = "at least " + number_text(check.lo);
    } else {
      want = "between " + number_text(check.lo) + " and " + number_text(check.hi);
    }
    // An unsigned option given "-1" arrives as 2^64 - 1.
    const bool wrapped = value >= 9223372036854775808.0 && check.hi < value;
    throw UsageError("--" + check.name + " must be " + want + ", got " +
                     (wrapped ? "a negative number" : number_text(value)));
  }
}

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
