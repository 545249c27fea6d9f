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

// params ← params + scale·direction for every parameter whose direction is defined; `scale` is a 0-dim
// tensor (kept on the device).
void add_scaled(std::vector<at::Tensor>& params, const std::vector<at::Tensor>& direction, const at::Tensor& scale) {
  for (size_t j = 0; j < params.size(); ++j)
    if (direction[j].defined()) params[j].addcmul_(direction[j], scale.to(params[j].scalar_type()));
}

// ρ/(‖t‖ + 1e-12) as a 0-dim float64 tensor.
at::Tensor radius_over_norm(double rho, const std::vector<at::Tensor>& tensors) {
  return rho / (global_norm(tensors) + kNormGuard);
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
  add_scaled(ctx.params, ctx.combined, radius_over_norm(options_.rho(), ctx.combined));
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
    if (ctx.combined[j].defined()) ctx.params[j].add_(ctx.combined[j], options_.rho());
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
  // ‖T g‖ first (one temporary of one tensor's size at a time), then W + ρ/‖Tg‖ · T²g.
  std::vector<at::Tensor> tg_norms;
  for (size_t j = 0; j < n; ++j) {
    if (!ctx.combined[j].defined()) continue;
    tg_norms.push_back(at::linalg_vector_norm(ctx.anchor[j].abs().add_(options_.eta()).mul_(ctx.combined[j]), 2)
                           .to(at::kDouble));
  }
  if (tg_norms.empty()) return;
  const at::Tensor scale = options_.rho() / (at::stack(tg_norms).square().sum().sqrt() + kNormGuard);
  for (size_t j = 0; j < n; ++j) {
    if (!ctx.combined[j].defined()) continue;
    at::Tensor t = ctx.anchor[j].abs().add_(options_.eta());
    ctx.params[j].addcmul_(t.square_().mul_(ctx.combined[j]), scale.to(ctx.params[j].scalar_type()));
  }
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
  const at::Tensor scale = radius_over_norm(rho_, ctx.params);
  for (size_t j = 0; j < n; ++j) ctx.params[j].mul_(scale.to(ctx.params[j].scalar_type())).add_(ctx.anchor[j]);
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
    add_scaled(ctx.params, ctx.combined, radius_over_norm(options_.rho(), ctx.combined));
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
