// Pieces of an offline HTML page: escaping, base64 for embedded images, number
// formats, and a small SVG line plot (no external assets, no JavaScript).
#pragma once

#include <string>
#include <vector>

#include "kr/core/json.hpp"

namespace kr::report {

// Text safe inside HTML elements and attribute values.
std::string escape(const std::string& text);

// RFC 4648 base64 (with padding), for data: URLs.
std::string base64(const std::string& bytes);

// "12.34 %" of a fraction, or "-" when `value` is not a number.
std::string percent(const Json& value);
// `value` through a printf format, or "-" when it is not a number.
std::string number(const Json& value, const char* format = "%.4f");

struct Series {
  std::string name;
  std::vector<double> x, y;
};

// A 420 x 320 SVG line plot of `series`; log axes show [1e-4, 1] on both axes (values
// clamped), `diagonal` draws y = x (an ROC's chance line).
std::string svg_plot(const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<Series>& series, bool log_axes,
                     bool diagonal);

}  // namespace kr::report
