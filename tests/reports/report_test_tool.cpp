// Helper of the `flatmin report` CLI test (cli_end_to_end.sh):
//   report_test_tool write-sweep DIR
//       writes the hand-built sweep root of fake_sweep.h into DIR;
//   report_test_tool check-png FILE MIN_COLOURS MIN_INK [RRGGBB ...]
//       decodes a screenshot and fails (exit 1) unless it has at least MIN_COLOURS distinct colours, a
//       fraction of at least MIN_INK non-white pixels, and somewhere each given colour (the figures' lines).
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <set>
#include <string>

#include "reports/fake_sweep.h"

namespace {

int check_png(int argc, char** argv) {
  int width = 0, height = 0, channels = 0;
  unsigned char* pixels = stbi_load(argv[2], &width, &height, &channels, 3);
  if (!pixels) {
    std::cerr << argv[2] << ": cannot decode: " << stbi_failure_reason() << '\n';
    return 1;
  }
  const long min_colours = std::atol(argv[3]);
  const double min_ink = std::atof(argv[4]);
  std::set<unsigned> colours;
  long ink = 0;
  const long count = static_cast<long>(width) * height;
  for (long i = 0; i < count; ++i) {
    const unsigned char* p = pixels + 3 * i;
    colours.insert((p[0] << 16) | (p[1] << 8) | p[2]);
    ink += p[0] < 245 || p[1] < 245 || p[2] < 245;
  }
  stbi_image_free(pixels);
  const double fraction = static_cast<double>(ink) / static_cast<double>(count);
  std::printf("%s: %dx%d, %zu colours, %.1f%% non-white\n", argv[2], width, height, colours.size(), 100 * fraction);
  bool ok = true;
  if (static_cast<long>(colours.size()) < min_colours) {
    std::printf("FAIL: fewer than %ld distinct colours\n", min_colours);
    ok = false;
  }
  if (fraction < min_ink) {
    std::printf("FAIL: less than %.1f%% non-white pixels (blank page?)\n", 100 * min_ink);
    ok = false;
  }
  for (int a = 5; a < argc; ++a) {
    const unsigned rgb = static_cast<unsigned>(std::strtoul(argv[a], nullptr, 16));
    if (!colours.count(rgb)) {
      std::printf("FAIL: colour #%s not in the screenshot (a figure not drawn?)\n", argv[a]);
      ok = false;
    }
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string command = argc > 1 ? argv[1] : "";
  if (command == "write-sweep" && argc == 3) {
    flatmin::test::write_fake_sweep(argv[2]);
    return 0;
  }
  if (command == "check-png" && argc >= 5) return check_png(argc, argv);
  std::cerr << "usage: report_test_tool write-sweep DIR | check-png FILE MIN_COLOURS MIN_INK [RRGGBB ...]\n";
  return 2;
}
