#pragma once
/// Loss landscapes (Li, Xu, Taylor, Studer, Goldstein 2018, "Visualizing the loss landscape of neural nets";
/// CR-SAM's Figure 4): the loss and accuracy at W + x·d₁ (+ y·d₂) over a grid, along random directions
/// normalised filter by filter to the weights, or along the line from one set of weights to another.
///
/// Filter normalisation: each filter of a direction (a slice along dimension 0 of a parameter with ≥ 2
/// dimensions: a convolution's output channel, a linear layer's output row) is scaled to the norm of the
/// same filter of W, so that a step of 1 moves every filter by its own size and landscapes of networks with
/// different weight scales compare. One-dimensional parameters (biases, BatchNorm) get a zero direction, as
/// Li et al.'s default, or (include_1d) are normalised as one filter each.
///
/// A random direction is drawn from counter-based Gaussian noise keyed by (seed, axis, parameter index):
/// the same seed gives the same raw direction for every model of the same architecture (each then
/// normalised to its own weights), so landscapes of SGD's and NSO's minima are drawn along the same
/// directions.

#include <cstdint>
#include <functional>
#include <set>
#include <utility>
#include <vector>

#include <ATen/Tensor.h>
#include <torch/arg.h>

#include "flatmin/geometry/objective.h"

namespace flatmin::geometry {

/// A direction in parameter space: one tensor per parameter, shaped like it.
using Direction = std::vector<at::Tensor>;

/// Scales `direction` filter by filter to the norms of `weights`' filters (see above). A filter of W that is
/// zero gives a zero direction filter. Throws flatmin::Error when the shapes differ.
Direction filter_normalized(const Direction& direction, const std::vector<at::Tensor>& weights, bool include_1d = false);

/// A seeded Gaussian direction (axis 0 or 1 for d₁, d₂), filter-normalised to `weights`.
Direction random_direction(const std::vector<at::Tensor>& weights, uint64_t seed, int64_t axis, bool include_1d = false);

/// `to` − `from`: the line from one set of weights (x = 0) to the other (x = 1). Throws on different shapes.
Direction difference_direction(const std::vector<at::Tensor>& from, const std::vector<at::Tensor>& to);

/// What is measured at a grid point: the loss and an accuracy (NaN when there is none), at the parameters'
/// current values.
struct PointValue {
  double loss = 0;
  double accuracy = 0;
};
using PointEvaluator = std::function<PointValue()>;

struct LandscapePoint {
  double x = 0, y = 0;
  double loss = 0, accuracy = 0;
};

struct LandscapeOptions {
  TORCH_ARG(std::vector<double>, xs) = std::vector<double>{};
  /// Empty: a 1-D landscape along d₁ only.
  TORCH_ARG(std::vector<double>, ys) = std::vector<double>{};
  /// Called after each point (progress, writing the row): index in the grid and the point.
  TORCH_ARG(std::function<void(int64_t, const LandscapePoint&)>, on_point) = nullptr;
  /// Grid indices already measured (a resumed grid): skipped.
  TORCH_ARG(std::set<int64_t>, skip) = std::set<int64_t>{};
};

/// The grid in row-major order (y outer, x inner; index = iy·|xs| + ix): for each point the parameters are
/// set to W + x·d₁ + y·d₂, `evaluate` runs, and W is restored exactly (by copy) afterwards, also on an
/// exception. Returns the points measured in this call.
std::vector<LandscapePoint> landscape(const std::vector<at::Tensor>& parameters, const Direction& d1, const Direction& d2,
                                      const PointEvaluator& evaluate, const LandscapeOptions& options);

/// n evenly spaced values from lo to hi (both included; n ≥ 2, or n = 1: {lo}).
std::vector<double> linspace(double lo, double hi, int64_t n);

}  // namespace flatmin::geometry
