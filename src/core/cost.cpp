#include "kr/core/cost.hpp"

#include <vector>

#include "kr/core/clock.hpp"

namespace kr::cost {

namespace {

struct Account {
  Split totals;
  std::vector<Part> open;  // innermost last
  Clock::time_point since = Clock::now();

  Part current() const { return open.empty() ? Part::compute : open.back(); }
  // Charges the time since the last switch to the current part.
  void charge() {
    const auto now = Clock::now();
    totals.seconds[static_cast<int>(current())] +=
        std::chrono::duration<double>(now - since).count();
    since = now;
  }
};

Account& account() {
  thread_local Account mine;
  return mine;
}

}  // namespace

const char* part_name(Part part) {
  switch (part) {
    case Part::compute:
      return "compute";
    case Part::data:
      return "data";
    case Part::comm:
      return "comm";
    case Part::io:
      return "io";
  }
  return "?";
}

Scope::Scope(Part part) {
  auto& mine = account();
  mine.charge();
  mine.open.push_back(part);
}

Scope::~Scope() {
  auto& mine = account();
  mine.charge();
  mine.open.pop_back();
}

double Split::total() const {
  double sum = 0;
  for (const double part : seconds) sum += part;
  return sum;
}

Split Split::operator-(const Split& earlier) const {
  Split difference;
  for (int part = 0; part < kParts; ++part)
    difference.seconds[part] = seconds[part] - earlier.seconds[part];
  return difference;
}

Json Split::to_json() const {
  const double wall = total();
  Json json{{"wall_seconds", wall}};
  for (int part = 0; part < kParts; ++part) {
    const std::string name = part_name(static_cast<Part>(part));
    json[name + "_seconds"] = seconds[part];
    json[name + "_share"] = wall > 0 ? seconds[part] / wall : 0.0;
  }
  return json;
}

Split snapshot() {
  auto& mine = account();
  mine.charge();
  return mine.totals;
}

}  // namespace kr::cost
