// The version and commit from the header cmake/flatmin_build_info.cmake writes at build time: one small
// file recompiles when the commit changes.
#include "flatmin/core/runtime.h"

#include "flatmin_build_info.h"

namespace flatmin {

std::string version() { return FLATMIN_VERSION; }

std::string build_commit() { return FLATMIN_COMMIT; }

}  // namespace flatmin
