#include "flatmin/core/stop_points.h"

#include <csignal>
#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "flatmin/core/error.h"

namespace flatmin {
namespace {

struct StopAt {
  std::string name;
  int64_t index = 0;
  int signal = SIGTERM;
};

struct StopPoints {
  std::vector<StopAt> wanted;
  std::map<std::string, int64_t> passes;
};

std::vector<StopAt> parse_stop_at(const char* text) {
  std::vector<StopAt> all;
  if (text == nullptr || *text == '\0') return all;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    const std::string bad = "FLATMIN_STOP_AT: '" + item + "' is not NAME@N or NAME@N:kill";
    StopAt s;
    const auto at = item.find('@');
    check(at != std::string::npos && at > 0, bad);
    s.name = item.substr(0, at);
    std::string rest = item.substr(at + 1);
    if (const auto colon = rest.find(':'); colon != std::string::npos) {
      check(rest.substr(colon + 1) == "kill", bad);
      s.signal = SIGKILL;
      rest = rest.substr(0, colon);
    }
    char* end = nullptr;
    s.index = std::strtoll(rest.c_str(), &end, 10);
    check(!rest.empty() && *end == '\0' && s.index >= 1, bad);
    all.push_back(s);
  }
  return all;
}

std::optional<StopPoints>& points() {
  static std::optional<StopPoints> p;
  return p;
}

}  // namespace

void reset_stop_points() { points() = StopPoints{parse_stop_at(std::getenv("FLATMIN_STOP_AT")), {}}; }

int64_t stop_point_passes(const char* name) {
  if (!points()) return 0;
  const auto found = points()->passes.find(name);
  return found == points()->passes.end() ? 0 : found->second;
}

void stop_point(const char* name, int64_t index) {
  if (!points()) reset_stop_points();
  StopPoints& p = *points();
  if (p.wanted.empty()) return;
  const int64_t pass = ++p.passes[name];
  if (index == 0) index = pass;
  for (const StopAt& s : p.wanted)
    if (s.name == name && s.index == index) std::raise(s.signal);
}

}  // namespace flatmin
