#include "kr/core/strings.hpp"

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

}  // namespace kr
