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

// A grid of numbers: "1,1.5,2" (a list) or "1:2:0.25" (from 1 to 2 in steps of 0.25,
// both ends included when the step reaches them: 1, 1.25, 1.5, 1.75, 2). A UsageError
// naming `option` for anything else (an empty grid, a step that is not positive).
std::vector<double> parse_grid(const std::string& text, const std::string& option);

// A double as option text that reads back exactly ("%.17g"), without trailing noise
// for values such as 0.1 that print shorter ("%.15g" when it reads back the same).
std::string number_text(double value);

}  // namespace kr
