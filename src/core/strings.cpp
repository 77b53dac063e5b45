#include "kr/core/strings.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "kr/core/error.hpp"

namespace kr {

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::string item;
  for (char c : text + ",") {
    if (c == ',' || c == ' ') {
      if (!item.empty()) items.push_back(item);
      item.clear();
    } else {
      item += c;
    }
  }
  return items;
}

std::vector<std::int64_t> parse_int_list(const std::string& text, const std::string& option) {
  std::vector<std::int64_t> values;
  for (const auto& item : split_list(text)) {
    char* end = nullptr;
    const long long value = std::strtoll(item.c_str(), &end, 10);
    if (end == item.c_str() || *end != '\0')
      throw UsageError("--" + option + ": '" + item +
                       "' is not an integer (a comma-separated list)");
    values.push_back(value);
  }
  return values;
}

namespace {
double parse_number(const std::string& item, const std::string& option) {
  char* end = nullptr;
  const double value = std::strtod(item.c_str(), &end);
  if (end == item.c_str() || *end != '\0' || !std::isfinite(value))
    throw UsageError("--" + option + ": '" + item + "' is not a number");
  return value;
}
}  // namespace

std::vector<double> parse_grid(const std::string& text, const std::string& option) {
  std::vector<double> values;
  const auto colon = text.find(':');
  if (colon == std::string::npos) {
    for (const auto& item : split_list(text)) values.push_back(parse_number(item, option));
  } else {
    const auto second = text.find(':', colon + 1);
    if (second == std::string::npos || text.find(':', second + 1) != std::string::npos)
      throw UsageError("--" + option + ": '" + text + "' is not FIRST:LAST:STEP");
    const double first = parse_number(text.substr(0, colon), option);
    const double last = parse_number(text.substr(colon + 1, second - colon - 1), option);
    const double step = parse_number(text.substr(second + 1), option);
    if (step <= 0 || last < first)
      throw UsageError("--" + option + ": '" + text + "' needs a positive step and FIRST <= LAST");
    // Counted, not accumulated: 0:0.9:0.1 gives 0.9 as its tenth value, not 0.8999...
    const auto count = static_cast<std::int64_t>(std::floor((last - first) / step + 1e-9)) + 1;
    if (count > 10000) throw UsageError("--" + option + ": '" + text + "' has over 10,000 values");
    for (std::int64_t i = 0; i < count; ++i) {
      const double value = first + static_cast<double>(i) * step;
      values.push_back(std::round(value * 1e12) / 1e12);
    }
  }
  if (values.empty()) throw UsageError("--" + option + ": an empty grid");
  return values;
}

std::string number_text(double value) {
  char text[40];
  std::snprintf(text, sizeof text, "%.15g", value);
  if (std::strtod(text, nullptr) != value) std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

}  // namespace kr
