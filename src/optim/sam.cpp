#include "flatmin/optim/sam.h"

#include <cmath>
#include <sstream>

#include <ATen/ATen.h>

#include "flatmin/core/error.h"
#include "flatmin/noise/noise.h"

namespace flatmin::optim {
namespace {

constexpr double kNormGuard = 1e-12;

void check_finite_at_least(double value, double lo, const std::string& what) {
  check(std::isfinite(value) && value >= lo,
        what + " must be finite and >= " + std::to_string(lo) + ", got " + std::to_string(value));
}

// A step's scalar ρ/‖·‖. On the CPU it is a host number: the dozen tiny tensor ops of a device scalar cost
// as much as a pass over an MLP's weights (SAM's step on the MLP, batch 32: 2.22× SGD with them). Elsewhere
// it is a 0-dim float64 tensor, so that a step never waits for the device.
struct StepScale {
  double host = 0;
  at::Tensor device;  // undefined: use `host`
  at::Tensor as(const at::Tensor& like) const { return device.to(like.scalar_type()); }
};

bool all_on_cpu(const std::vector<at::Tensor>& tensors) {
  for (const auto& t : tensors)
    if (t.defined() && !t.is_cpu()) return false;
  return true;
}

// ρ/(‖t‖ + 1e-12), ‖t‖ the norm of all tensors together.
StepScale radius_over_norm(double rho, const std::vector<at::Tensor>& tensors) {
  if (!all_on_cpu(tensors)) return {0, rho / (global_norm(tensors) + kNormGuard)};
  double sum_sq = 0;
  for (const auto& t : tensors) {
    if (!t.defined()) continue;
    const double norm = at::linalg_vector_norm(t, 2).item<double>();
    sum_sq += norm * norm;
  }
  return {rho / (std::sqrt(sum_sq) + kNormGuard), {}};
}

// params ← params + scale·s_j·direction for every parameter whose direction is defined (s_j: ctx's factor).
void add_scaled(const StepContext& ctx, std::vector<at::Tensor>& params, const std::vector<at::Tensor>& direction,
                const StepScale& scale) {
  for (size_t j = 0; j < params.size(); ++j) {
    if (!direction[j].defined()) continue;
    if (scale.device.defined()) params[j].addcmul_(direction[j], scale.as(params[j]) * ctx.scale(j));
    else params[j].add_(direction[j], scale.host * ctx.scale(j));
  }
}

// params ← scale·s_j·params + anchor.
void scale_and_shift(const StepContext& ctx, std::vector<at::Tensor>& params, const std::vector<at::Tensor>& anchor,
                     const StepScale& scale, const std::vector<at::Tensor>& only_where_defined) {
  for (size_t j = 0; j < params.size(); ++j) {
    if (!only_where_defined[j].defined()) continue;
    if (scale.device.defined()) params[j].mul_(scale.as(params[j]) * ctx.scale(j));
    else params[j].mul_(scale.host * ctx.scale(j));
    params[j].add_(anchor[j]);
  }
}

double half_cosine(int64_t epoch, int64_t total_epochs) {  // 0 at the first epoch, 1 at the last
  if (total_epochs <= 1) return 1.0;
  return 0.5 * (1.0 - std::cos(M_PI * static_cast<double>(epoch) / static_cast<double>(total_epochs - 1)));
}

}  // namespace

at::Tensor global_norm(const std::vector<at::Tensor>& tensors) {
  std::vector<at::Tensor> norms;
  for (const auto& t : tensors)
    if (t.defined()) norms.push_back(at::linalg_vector_norm(t, 2).to(at::kDouble));
  if (norms.empty()) return at::zeros({}, at::TensorOptions().dtype(at::kDouble));
  return at::stack(norms).square().sum().sqrt();
}

// ------------------------------------------------------------------------------------------------ SAM
Sam::Sam(SamOptions options) : options_(options) { check_finite_at_least(options_.rho(), 0, "SAM: rho"); }

void Sam::move_to(int64_t i, StepContext& ctx) {
  if (i == 0) return;  // the clean point W
  add_scaled(ctx, ctx.params, ctx.combined, radius_over_norm(options_.rho(), ctx.combined));
}

std::string Sam::describe() const {
  std::ostringstream out;
  out << "sam rho=" << options_.rho();
  return out.str();
}

// ----------------------------------------------------------------------------------------------- USAM
Usam::Usam(SamOptions options) : options_(options) { check_finite_at_least(options_.rho(), 0, "USAM: rho"); }

void Usam::move_to(int64_t i, StepContext& ctx) {
  if (i == 0) return;
  for (size_t j = 0; j < ctx.params.size(); ++j)
    if (ctx.combined[j].defined()) ctx.params[j].add_(ctx.combined[j], options_.rho() * ctx.scale(j));
}

std::string Usam::describe() const {
  std::ostringstream out;
  out << "usam rho=" << options_.rho();
  return out.str();
}

// ----------------------------------------------------------------------------------------------- ASAM
Asam::Asam(AsamOptions options) : options_(options) {
  check_finite_at_least(options_.rho(), 0, "ASAM: rho");
  check_finite_at_least(options_.eta(), 0, "ASAM: eta");
}

void Asam::move_to(int64_t i, StepContext& ctx) {
  if (i == 0) return;
  const size_t n = ctx.params.size();
  // W + ρ·T²g/‖Tg‖ with T = |W| + η, built in the parameters themselves (they hold W, the anchor keeps a
  // copy): p ← T²g in place, ‖Tg‖² = ⟨T²g, g⟩, then p ← scale·p + W. No temporary of a parameter's size.
  const bool on_cpu = all_on_cpu(ctx.params);
  at::Tensor tg_norm_sq_device = on_cpu ? at::Tensor() : at::zeros({}, ctx.params.front().options().dtype(at::kDouble));
  double tg_norm_sq = 0;
  bool any = false;
  for (size_t j = 0; j < n; ++j) {
    const at::Tensor& g = ctx.combined[j];
    if (!g.defined()) continue;
    at::Tensor& p = ctx.params[j];
    p.abs_().add_(options_.eta()).square_().mul_(g);
    const at::Tensor dot = at::dot(p.reshape(-1), g.reshape(-1));
    if (on_cpu) tg_norm_sq += dot.item<double>();
    else tg_norm_sq_device += dot.to(at::kDouble);
    any = true;
  }
  if (!any) return;
  const StepScale scale = on_cpu ? StepScale{options_.rho() / (std::sqrt(tg_norm_sq) + kNormGuard), {}}
                                 : StepScale{0, options_.rho() / (tg_norm_sq_device.sqrt() + kNormGuard)};
  scale_and_shift(ctx, ctx.params, ctx.anchor, scale, ctx.combined);
}

std::string Asam::describe() const {
  std::ostringstream out;
  out << "asam rho=" << options_.rho() << " eta=" << options_.eta();
  return out.str();
}

// ----------------------------------------------------------------------------------------------- RSAM
Rsam::Rsam(RsamOptions options) : options_(options) {
  check_finite_at_least(options_.rho(), 0, "RSAM: rho");
  check_finite_at_least(options_.sigma(), 0, "RSAM: sigma");
  check_finite_at_least(options_.lambda(), 0, "RSAM: lambda");
  check(std::isfinite(options_.sigma_start()) && std::isfinite(options_.rho_end()),
        "RSAM: schedule ends must be finite");
  rho_ = options_.rho();
  sigma_ = options_.sigma_start() >= 0 ? options_.sigma_start() : options_.sigma();
}

void Rsam::set_epoch(int64_t epoch, int64_t total_epochs) {
  const double t = half_cosine(epoch, total_epochs);
  sigma_ = options_.sigma_start() >= 0 ? options_.sigma_start() + (options_.sigma() - options_.sigma_start()) * t
                                       : options_.sigma();
  rho_ = options_.rho_end() >= 0 ? options_.rho_end() + (options_.rho() - options_.rho_end()) * (1.0 - t)
                                 : options_.rho();
}

void Rsam::move_to(int64_t i, StepContext& ctx) {
  const size_t n = ctx.params.size();
  if (i == 0) {
    // W + δ, δ = σ·‖W_j‖·z_j per output unit (per tensor for 0-D and 1-D tensors).
    for (size_t j = 0; j < n; ++j) {
      at::Tensor& p = ctx.params[j];
      const at::Tensor& w = ctx.anchor[j];
      noise::fill_noise_(p, noise::NoiseLaw::kGaussian, 1.0,
                         noise::noise_key(ctx.seed, static_cast<uint64_t>(ctx.step), 0, j));
      at::Tensor unit_norms;
      if (w.dim() >= 2) {
        std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
        shape[0] = w.size(0);
        unit_norms = at::linalg_vector_norm(w.reshape({w.size(0), -1}), 2, at::IntArrayRef{1}).view(shape);
      } else {
        unit_norms = at::linalg_vector_norm(w, 2);
      }
      p.mul_(unit_norms.mul_(sigma_)).add_(w);
    }
    return;
  }
  // The parameters hold W + δ and ctx.combined g̃ = g(W + δ): turn them into v = λ·g̃ + δ in place,
  // then into W + ρ·v/(‖v‖ + 1e-12).
  // A parameter that received no gradient gets v = 0: it goes back to W.
  for (size_t j = 0; j < n; ++j) {
    if (ctx.combined[j].defined()) ctx.params[j].sub_(ctx.anchor[j]).add_(ctx.combined[j], options_.lambda());
    else ctx.params[j].zero_();
  }
  scale_and_shift(ctx, ctx.params, ctx.anchor, radius_over_norm(rho_, ctx.params), ctx.params);
}

std::string Rsam::describe() const {
  std::ostringstream out;
  out << "rsam rho=" << rho_ << " sigma=" << sigma_ << " lambda=" << options_.lambda();
  if (options_.sigma_start() >= 0) out << " sigma-schedule=cosine(" << options_.sigma_start() << "->" << options_.sigma() << ")";
  if (options_.rho_end() >= 0) out << " rho-schedule=cosine(" << options_.rho() << "->" << options_.rho_end() << ")";
  return out.str();
}

// --------------------------------------------------------------------------------------------- CR-SAM
CrSam::CrSam(CrSamOptions options) : options_(options) {
  check_finite_at_least(options_.rho(), 0, "CR-SAM: rho");
  check_finite_at_least(options_.alpha(), 0, "CR-SAM: alpha");
  check_finite_at_least(options_.beta(), 0, "CR-SAM: beta");
}

void CrSam::move_to(int64_t i, StepContext& ctx) {
  if (i == 0) return;
  if (i == 1) {  // W + ρv, v = g_o/(‖g_o‖ + 1e-12)
    add_scaled(ctx, ctx.params, ctx.combined, radius_over_norm(options_.rho(), ctx.combined));
    return;
  }
  // W − ρv = 2W − (W + ρv).
  for (size_t j = 0; j < ctx.params.size(); ++j) ctx.params[j].neg_().add_(ctx.anchor[j], 2.0);
}

Blend CrSam::blend(int64_t i) const {
  const double a = options_.alpha(), b = options_.beta();
  if (i == 0) return {};                       // c = g_o (v is read from it at move_to(1))
  if (i == 1) return {-2.0 * a, 1.0 + a + b};  // c = −2α·g_o + (1+α+β)·g_w
  return {1.0, a - b};                         // c += (α−β)·g_b
}

std::string CrSam::describe() const {
  std::ostringstream out;
  out << "crsam rho=" << options_.rho() << " alpha=" << options_.alpha() << " beta=" << options_.beta();
  return out.str();
}

}  // namespace flatmin::optim
