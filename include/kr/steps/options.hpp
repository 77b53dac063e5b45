// A step's options, declared once: name, type, default and help, bound to a field
// of the step's options struct, and marked operational where they are declared.
//
// Note [Typed options]
// A step declares its options into a struct of its own (`po::value<T>(&field)`): the
// cli parses the command line and the INI file and Boost stores every value, defaults
// included, into the struct at start-up, so the step reads fields, not names, and a
// misspelt name cannot reach a run. The struct lives in the OptionTable of that parse
// and is handed to the step with its Context (one struct per invocation, so a step run
// inside another step, as `kr mia` replays the pipeline, has its own).
// `operational()` marks the option declared last as one that says where or how a run
// goes (paths, threads, checkpoint cadence, fault injection), not what it computes:
// config_hash leaves those out, so two runs with equal hashes compute the same thing.
// `at_least(lo)` / `range(lo, hi)` bound the option declared last, and every
// floating-point option must be finite: `validate()` (run by the cli after parsing,
// before any step starts) refuses a value outside with a UsageError naming the option,
// so a count of 0 or a rate of nan never reaches a division or LibTorch.
#pragma once

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/value_semantic.hpp>

#include <boost/program_options/variables_map.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

namespace kr::steps {

namespace po = boost::program_options;

class OptionTable {
 public:
  explicit OptionTable(po::options_description& description) : description_(description) {}

  // `--name` of type T with a default, stored into *field.
  template <typename T, typename D>
  OptionTable& operator()(const char* name, T* field, const D& default_value, const char* help) {
    description_.add_options()(name, po::value<T>(field)->default_value(T(default_value)), help);
    last_ = name;
    last_value_ = reader_of(field);
    if constexpr (std::is_floating_point_v<T>) add_check(-kInf, kInf);
    return *this;
  }
  // A switch: `--name` sets *field.
  OptionTable& operator()(const char* name, bool* field, const char* help) {
    description_.add_options()(name, po::bool_switch(field), help);
    last_ = name;
    last_value_ = nullptr;
    return *this;
  }
  // An option read by name (Context::get), for the common options of every step.
  template <typename T>
  OptionTable& unbound(const char* name, const T& default_value, const char* help) {
    description_.add_options()(name, po::value<T>()->default_value(default_value), help);
    last_ = name;
    last_value_ = nullptr;
    if constexpr (std::is_arithmetic_v<T>) {
      last_value_ = [key = std::string(name)](const po::variables_map& values) {
        return static_cast<double>(values[key].as<T>());
      };
      if constexpr (std::is_floating_point_v<T>) add_check(-kInf, kInf);
    }
    return *this;
  }
  // An option without a value (`--help`).
  OptionTable& plain(const char* name, const char* help) {
    description_.add_options()(name, help);
    last_ = name;
    last_value_ = nullptr;
    return *this;
  }
  // Bounds (inclusive) of the numeric option declared last.
  OptionTable& at_least(double lo) { return range(lo, kInf); }
  OptionTable& range(double lo, double hi) {
    if (!last_value_) throw std::logic_error("--" + last_ + ": only numeric options take bounds");
    add_check(lo, hi);
    return *this;
  }
  // Throws UsageError("--name must be ...") for the first value out of its bounds.
  void validate(const po::variables_map& values) const;
  OptionTable& operational() {
    operational_.insert(last_.substr(0, last_.find(',')));
    return *this;
  }

  // The struct the options of this parse are stored in; made on first use.
  template <typename Options>
  Options& bind() {
    if (!storage_) storage_ = std::make_shared<Options>();
    return *static_cast<Options*>(storage_.get());
  }

  po::options_description& description() { return description_; }
  const std::set<std::string>& operational_names() const { return operational_; }
  std::shared_ptr<void> storage() const { return storage_; }

 private:
  static constexpr double kInf = std::numeric_limits<double>::infinity();
  using Reader = std::function<double(const po::variables_map&)>;
  struct Check {
    std::string name;
    Reader value;
    double lo, hi;
  };
  template <typename T>
  static Reader reader_of(T* field) {
    if constexpr (std::is_arithmetic_v<T>) {
      return [field](const po::variables_map&) { return static_cast<double>(*field); };
    } else {
      return nullptr;
    }
  }
  void add_check(double lo, double hi) {
    checks_.push_back(Check{last_.substr(0, last_.find(',')), last_value_, lo, hi});
  }

  po::options_description& description_;
  std::string last_;
  Reader last_value_;
  std::vector<Check> checks_;
  std::set<std::string> operational_;
  std::shared_ptr<void> storage_;
};

}  // namespace kr::steps
