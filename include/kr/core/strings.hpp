// Small text helpers for option values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kr {

// "a,b, c" -> {"a", "b", "c"}: items separated by commas and/or spaces; empty items dropped.
std::vector<std::string> split_list(const std::string& text);

// "7,250, 999" -> {7, 250, 999}; a UsageError naming `option` for anything that is not an integer.
std::vector<std::int64_t> parse_int_list(const std::string& text, const std::string& option);

}  // namespace kr
