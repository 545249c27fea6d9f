#include "flatmin/geometry/landscape.h"

#include <ATen/ATen.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"
#include "flatmin/noise/noise.h"

namespace flatmin::geometry {

namespace {

void check_shapes(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b, const char* what) {
  check(a.size() == b.size(), std::string(what) + ": " + std::to_string(a.size()) + " tensors vs " +
                                  std::to_string(b.size()) + " (not the same architecture)");
  for (size_t i = 0; i < a.size(); ++i)
    check(a[i].sizes() == b[i].sizes(), std::string(what) + ": parameter " + std::to_string(i) + " has shape " +
                                            c10::str(a[i].sizes()) + " vs " + c10::str(b[i].sizes()));
}

// A copy of each tensor's values, detached.
std::vector<at::Tensor> copies(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> out;
  for (const at::Tensor& t : tensors) out.push_back(t.detach().clone());
  return out;
}

}  // namespace

Direction filter_normalized(const Direction& direction, const std::vector<at::Tensor>& weights, bool include_1d) {
  check_shapes(direction, weights, "filter normalisation");
  torch::NoGradGuard no_grad;
  Direction out;
  for (size_t i = 0; i < direction.size(); ++i) {
    const at::Tensor& w = weights[i];
    if (w.dim() <= 1) {
      if (!include_1d) {
        out.push_back(at::zeros_like(w));
        continue;
      }
      const at::Tensor d = direction[i].detach();
      const at::Tensor dn = d.norm();
      out.push_back(dn.item<double>() > 0 ? d * (w.norm() / dn) : at::zeros_like(w));
      continue;
    }
    // Per filter (row of the [filters, rest] view): d_f ← d_f·‖w_f‖/‖d_f‖ (zero where d_f is zero).
    const at::Tensor d = direction[i].detach().reshape({w.size(0), -1});
    const at::Tensor wn = w.detach().reshape({w.size(0), -1}).norm(2, {1}, /*keepdim=*/true);
    const at::Tensor dn = d.norm(2, {1}, /*keepdim=*/true);
    out.push_back(at::where(dn > 0, d * wn / dn.clamp_min(1e-30), at::zeros_like(d)).reshape(w.sizes()));
  }
  return out;
}

Direction random_direction(const std::vector<at::Tensor>& weights, uint64_t seed, int64_t axis, bool include_1d) {
  Direction raw;
  for (size_t i = 0; i < weights.size(); ++i) {
    at::Tensor d = at::empty_like(weights[i].detach());
    noise::fill_noise_(d, noise::NoiseLaw::kGaussian, 1.0,
                       noise::noise_key(seed, 0, static_cast<uint64_t>(axis), static_cast<uint64_t>(i)));
    raw.push_back(d);
  }
  return filter_normalized(raw, weights, include_1d);
}

Direction difference_direction(const std::vector<at::Tensor>& from, const std::vector<at::Tensor>& to) {
  check_shapes(from, to, "the line between two models");
  Direction out;
  for (size_t i = 0; i < from.size(); ++i) out.push_back((to[i].detach() - from[i].detach()).clone());
  return out;
}

std::vector<double> linspace(double lo, double hi, int64_t n) {
  check(n >= 1, "a landscape axis needs at least one point");
  std::vector<double> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(n == 1 ? lo : lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(n - 1));
  return out;
}

std::vector<LandscapePoint> landscape(const std::vector<at::Tensor>& parameters, const Direction& d1, const Direction& d2,
                                      const PointEvaluator& evaluate, const LandscapeOptions& options) {
  check(!options.xs().empty(), "a landscape needs x values");
  check_shapes(d1, parameters, "direction 1");
  const bool two_d = !options.ys().empty();
  if (two_d) check_shapes(d2, parameters, "direction 2");
  torch::NoGradGuard no_grad;
  const std::vector<at::Tensor> anchor = copies(parameters);
  struct Restore {  // W back exactly, whatever happens
    const std::vector<at::Tensor>& parameters;
    const std::vector<at::Tensor>& anchor;
    ~Restore() {
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < parameters.size(); ++i) parameters[i].detach().copy_(anchor[i]);
    }
  } restore{parameters, anchor};
  const std::vector<double> ys = two_d ? options.ys() : std::vector<double>{0.0};
  const int64_t nx = static_cast<int64_t>(options.xs().size());
  std::vector<LandscapePoint> out;
  for (int64_t iy = 0; iy < static_cast<int64_t>(ys.size()); ++iy) {
    for (int64_t ix = 0; ix < nx; ++ix) {
      const int64_t index = iy * nx + ix;
      if (options.skip().count(index)) continue;
      const double x = options.xs()[static_cast<size_t>(ix)], y = ys[static_cast<size_t>(iy)];
      for (size_t i = 0; i < parameters.size(); ++i) {
        at::Tensor p = parameters[i].detach();
        p.copy_(anchor[i]).add_(d1[i], x);
        if (two_d) p.add_(d2[i], y);
      }
      const PointValue v = evaluate();
      const LandscapePoint point{x, y, v.loss, v.accuracy};
      out.push_back(point);
      if (options.on_point()) options.on_point()(index, point);
    }
  }
  return out;
}

}  // namespace flatmin::geometry
