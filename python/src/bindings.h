#pragma once
// The parts of the _flatmin extension, one per concern (module.cpp assembles them).
#include <pybind11/pybind11.h>

namespace flatmin::python {

/// flatmin.train and flatmin.measure: the CLI's train and geometry jobs, with the CLI's options.
void bind_jobs(pybind11::module_& m);

}  // namespace flatmin::python
