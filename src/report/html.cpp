#include "kr/report/html.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace kr::report {

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string base64(const std::string& bytes) {
  static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                       static_cast<unsigned char>(bytes[i + 2]);
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
  }
  if (i + 1 == bytes.size()) {
    const unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
    out += {table[v >> 18], table[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == bytes.size()) {
    const unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) |
                       (static_cast<unsigned char>(bytes[i + 1]) << 8);
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], '='};
  }
  return out;
}

std::string percent(const Json& value) {
  if (!value.is_number()) return "-";
  char text[32];
  std::snprintf(text, sizeof text, "%.2f %%", 100.0 * value.get<double>());
  return text;
}

std::string number(const Json& value, const char* format) {
  if (!value.is_number()) return "-";
  char text[32];
  std::snprintf(text, sizeof text, format, value.get<double>());
  return text;
}

namespace {

const char* kColours[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"};

}  // namespace

std::string svg_plot(const std::string& title, const std::string& x_label,
                     const std::string& y_label, const std::vector<Series>& series, bool log_axes,
                     bool diagonal) {
  const double width = 420, height = 320, left = 60, right = 20, top = 30, bottom = 45;
  double x_min = 1e300, x_max = -1e300, y_min = 1e300, y_max = -1e300;
  auto tx = [&](double v) { return log_axes ? std::log10(std::max(v, 1e-4)) : v; };
  for (const auto& s : series)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      x_min = std::min(x_min, tx(s.x[i]));
      x_max = std::max(x_max, tx(s.x[i]));
      y_min = std::min(y_min, tx(s.y[i]));
      y_max = std::max(y_max, tx(s.y[i]));
    }
  if (log_axes) {
    x_min = y_min = -4;
    x_max = y_max = 0;
  }
  if (!(x_max > x_min)) {
    x_min -= 1;
    x_max += 1;
  }
  if (!(y_max > y_min)) {
    y_min -= 0.01;
    y_max += 0.01;
  }
  auto px = [&](double v) {
    return left + (tx(v) - x_min) / (x_max - x_min) * (width - left - right);
  };
  auto py = [&](double v) {
    return height - bottom - (tx(v) - y_min) / (y_max - y_min) * (height - top - bottom);
  };
  std::ostringstream svg;
  svg << "<svg xmlns='http://www.w3.org/2000/svg' width='" << width << "' height='" << height
      << "' font-family='sans-serif' font-size='11'>"
      << "<text x='" << width / 2 << "' y='16' text-anchor='middle' font-size='13'>"
      << escape(title) << "</text>"
      << "<rect x='" << left << "' y='" << top << "' width='" << width - left - right
      << "' height='" << height - top - bottom << "' fill='none' stroke='#888'/>"
      << "<text x='" << width / 2 << "' y='" << height - 8 << "' text-anchor='middle'>"
      << escape(x_label) << "</text>"
      << "<text transform='translate(14," << height / 2 << ") rotate(-90)' text-anchor='middle'>"
      << escape(y_label) << "</text>";
  for (int t = 0; t <= 4; ++t) {
    const double fx = x_min + (x_max - x_min) * t / 4, fy = y_min + (y_max - y_min) * t / 4;
    const double vx = log_axes ? std::pow(10.0, fx) : fx, vy = log_axes ? std::pow(10.0, fy) : fy;
    char lx[32], ly[32];
    std::snprintf(lx, sizeof lx, log_axes ? "%g" : "%.3g", vx);
    std::snprintf(ly, sizeof ly, log_axes ? "%g" : "%.3g", vy);
    svg << "<text x='" << px(vx) << "' y='" << height - bottom + 14 << "' text-anchor='middle'>"
        << lx << "</text>"
        << "<text x='" << left - 4 << "' y='" << py(vy) + 4 << "' text-anchor='end'>" << ly
        << "</text>";
  }
  if (diagonal) {
    svg << "<line x1='" << px(log_axes ? 1e-4 : 0) << "' y1='" << py(log_axes ? 1e-4 : 0)
        << "' x2='" << px(1) << "' y2='" << py(1) << "' stroke='#bbb' stroke-dasharray='4 3'/>";
  }
  for (std::size_t k = 0; k < series.size(); ++k) {
    const auto& s = series[k];
    svg << "<polyline fill='none' stroke-width='1.8' stroke='" << kColours[k % 5] << "' points='";
    for (std::size_t i = 0; i < s.x.size(); ++i) svg << px(s.x[i]) << "," << py(s.y[i]) << " ";
    svg << "'/><text x='" << left + 8 << "' y='" << top + 14 + 13 * k << "' fill='"
        << kColours[k % 5] << "'>" << escape(s.name) << "</text>";
  }
  svg << "</svg>";
  return svg.str();
}

}  // namespace kr::report
