#include "flatmin/core/files.h"

#include <filesystem>
#include <fstream>

#include "flatmin/core/error.h"

namespace flatmin {

void write_text_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    check(out.good(), tmp + ": cannot open for writing");
    out << text;
    out.flush();
    check(out.good(), tmp + ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  check(!ec, path + ": cannot write: " + ec.message());
}

}  // namespace flatmin
