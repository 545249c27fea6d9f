#include "flatmin/optim/bsam.h"

#include <cmath>
#include <sstream>

#include <ATen/ATen.h>
#include <torch/serialize/archive.h>
#include <torch/utils.h>

#include "flatmin/core/error.h"
#include "flatmin/noise/noise.h"

namespace flatmin::optim {
namespace {

void check_positive(double value, const std::string& what) {
  check(std::isfinite(value) && value > 0, "bSAM: " + what + " must be finite and > 0, got " + std::to_string(value));
}

void check_beta(double value, const std::string& what) {
  check(value >= 0 && value < 1, "bSAM: " + what + " must be in [0, 1), got " + std::to_string(value));
}

}  // namespace

Bsam::Bsam(BsamOptions options) : options_(options) {
  check(options_.train_size() > 0,
        "bSAM: the number of training examples N must be > 0, got " + std::to_string(options_.train_size()));
  check(std::isfinite(options_.rho()) && options_.rho() >= 0, "bSAM: rho must be finite and >= 0");
  check(std::isfinite(options_.prior_precision()) && options_.prior_precision() >= 0,
        "bSAM: prior precision must be finite and >= 0");
  check(std::isfinite(options_.damping()) && options_.damping() >= 0, "bSAM: damping must be finite and >= 0");
  check(std::isfinite(options_.noise_std()) && options_.noise_std() >= 0, "bSAM: noise std must be finite and >= 0");
  // The noise std set directly: the first sample θ = ω + z/√(N·s₀) then has exactly that std.
  if (options_.noise_std() > 0)
    options_.init_precision(1.0 / (static_cast<double>(options_.train_size()) * options_.noise_std() * options_.noise_std()));
  check_positive(options_.init_precision(), "initial precision");
  check_beta(options_.beta1(), "beta1");
  check_beta(options_.beta2(), "beta2");
}

void Bsam::init_state(const std::vector<at::Tensor>& params) {
  if (s_.empty()) {
    for (const auto& p : params) {
      s_.push_back(at::full_like(p, options_.init_precision(), at::MemoryFormat::Contiguous));
      m_.push_back(at::zeros_like(p, at::MemoryFormat::Contiguous));
    }
  }
  if (options_.prior_at_init() && prior_mean_.empty())
    for (const auto& p : params) prior_mean_.push_back(p.detach().clone(at::MemoryFormat::Contiguous));
  check(s_.size() == params.size(), "bSAM: the state has " + std::to_string(s_.size()) + " tensors but there are " +
                                        std::to_string(params.size()) + " parameters");
  for (size_t j = 0; j < params.size(); ++j)
    check(s_[j].sizes() == params[j].sizes(), "bSAM: the state of parameter " + std::to_string(j) + " has another shape");
  h_.resize(params.size());
}

void Bsam::move_to(int64_t i, StepContext& ctx) {
  const size_t n = ctx.params.size();
  const double N = static_cast<double>(options_.train_size());
  if (i == 0) {
    check(!awaiting_update_,
          "bSAM: the previous step was not applied by BsamUpdate: bSAM's base optimizer must be its BsamUpdate");
    init_state(ctx.params);
    // θ = ω + z/√(N·s). h is free until the next pass recomputes it: it holds √(N·s) meanwhile, so no
    // temporary of a parameter's size is made.
    for (size_t j = 0; j < n; ++j) {
      at::Tensor& p = ctx.params[j];
      if (!h_[j].defined()) h_[j] = at::empty_like(p, at::MemoryFormat::Contiguous);
      noise::fill_noise_(p, noise::NoiseLaw::kGaussian, 1.0,
                         noise::noise_key(ctx.seed, static_cast<uint64_t>(ctx.step), 0, j));
      p.div_(at::mul_out(h_[j], s_[j], N).sqrt_()).add_(ctx.anchor[j]);
    }
    return;
  }
  // The parameters hold θ, ctx.combined g = g(θ): h = √s ⊙ |g|, then ω + ε with ε = ρ·g/s.
  for (size_t j = 0; j < n; ++j) {
    const at::Tensor& g = ctx.combined[j];
    at::Tensor& p = ctx.params[j];
    p.copy_(ctx.anchor[j]);
    if (!g.defined()) {
      h_[j] = at::Tensor();
      continue;
    }
    if (!h_[j].defined()) h_[j] = at::empty_like(g);
    at::sqrt_out(h_[j], s_[j]).mul_(g).abs_();  // √s ⊙ |g| (s > 0), without a temporary
    p.addcdiv_(g, s_[j], options_.rho());
  }
  awaiting_update_ = true;
}

void Bsam::update(size_t j, at::Tensor& w, double lr) {
  check(j < s_.size() && s_[j].sizes() == w.sizes(), "BsamUpdate: its parameters are not those of the bSAM step");
  const at::Tensor& g_hat = w.grad();
  if (!g_hat.defined() || !h_[j].defined()) return;
  const double b1 = options_.beta1(), b2 = options_.beta2();
  const double delta = options_.prior_precision() / static_cast<double>(options_.train_size());
  // m ← β1·m + (1 − β1)·(ĝ + δ·ω);  ω ← ω − α·m/s (the old s);  s ← β2·s + (1 − β2)·(h + γ + δ).
  m_[j].mul_(b1).add_(g_hat, 1.0 - b1).add_(w, (1.0 - b1) * delta);
  if (options_.prior_at_init()) m_[j].add_(prior_mean_[j], -(1.0 - b1) * delta);  // δ·(ω − ω₀)
  w.addcdiv_(m_[j], s_[j], -lr);
  s_[j].mul_(b2).add_(h_[j], 1.0 - b2).add_((1.0 - b2) * (options_.damping() + delta));
}

std::string Bsam::describe() const {
  std::ostringstream out;
  out << "bsam rho=" << options_.rho() << " N=" << options_.train_size() << " prior-precision=" << options_.prior_precision()
      << " damping=" << options_.damping() << " s0=" << options_.init_precision() << " beta1=" << options_.beta1()
      << " beta2=" << options_.beta2();
  if (options_.noise_std() > 0) out << " noise-std=" << options_.noise_std();
  if (options_.prior_at_init()) out << " prior-mean=init";
  if (options_.statistics_from_ascent()) out << " bn-statistics=ascent";
  return out.str();
}

void Bsam::save(torch::serialize::OutputArchive& archive) const {
  archive.write("count", c10::IValue(static_cast<int64_t>(s_.size())));
  for (size_t j = 0; j < s_.size(); ++j) {
    archive.write("precision/" + std::to_string(j), s_[j], /*is_buffer=*/true);
    archive.write("momentum/" + std::to_string(j), m_[j], /*is_buffer=*/true);
  }
  for (size_t j = 0; j < prior_mean_.size(); ++j)
    archive.write("prior_mean/" + std::to_string(j), prior_mean_[j], /*is_buffer=*/true);
}

void Bsam::load(torch::serialize::InputArchive& archive) {
  c10::IValue count;
  archive.read("count", count);
  s_.assign(static_cast<size_t>(count.toInt()), at::Tensor());
  m_.assign(s_.size(), at::Tensor());
  h_.assign(s_.size(), at::Tensor());
  for (size_t j = 0; j < s_.size(); ++j) {
    archive.read("precision/" + std::to_string(j), s_[j], /*is_buffer=*/true);
    archive.read("momentum/" + std::to_string(j), m_[j], /*is_buffer=*/true);
  }
  prior_mean_.clear();
  if (options_.prior_at_init())
    for (size_t j = 0; j < s_.size(); ++j) {
      at::Tensor w0;
      check(archive.try_read("prior_mean/" + std::to_string(j), w0, /*is_buffer=*/true),
            "bSAM: the saved state has no prior mean (it was written without prior_at_init)");
      prior_mean_.push_back(w0);
    }
  awaiting_update_ = false;
}

// ------------------------------------------------------------------------------------------ BsamUpdate
BsamUpdate::BsamUpdate(std::vector<at::Tensor> params, std::shared_ptr<Bsam> method, BsamUpdateOptions options)
    : torch::optim::Optimizer({torch::optim::OptimizerParamGroup(std::move(params))},
                              std::make_unique<BsamUpdateOptions>(options)),
      method_(std::move(method)) {
  check(method_ != nullptr, "BsamUpdate: method is null");
  check(std::isfinite(options.lr()) && options.lr() >= 0, "bSAM: learning rate must be finite and >= 0");
}

at::Tensor BsamUpdate::step(LossClosure closure) {
  check(!closure, "BsamUpdate::step: run it as the base optimizer of a PerturbedOptimizer (no closure)");
  torch::NoGradGuard no_grad;
  size_t j = 0;  // the index among parameters that require grad, as the PerturbedOptimizer orders them
  for (auto& group : param_groups_) {
    const double lr = group.options().get_lr();
    for (auto& p : group.params()) {
      if (!p.requires_grad()) continue;
      method_->update(j++, p, lr);
    }
  }
  method_->finish_update();
  return {};
}

void BsamUpdate::save(torch::serialize::OutputArchive& archive) const {
  std::vector<double> lrs;
  for (const auto& group : param_groups_) lrs.push_back(group.options().get_lr());
  archive.write("lr", at::tensor(lrs, at::TensorOptions().dtype(at::kDouble)), /*is_buffer=*/true);
}

void BsamUpdate::load(torch::serialize::InputArchive& archive) {
  at::Tensor lrs;
  archive.read("lr", lrs, /*is_buffer=*/true);
  check(lrs.numel() == static_cast<int64_t>(param_groups_.size()), "BsamUpdate: saved state has another number of groups");
  for (size_t g = 0; g < param_groups_.size(); ++g) param_groups_[g].options().set_lr(lrs[g].item<double>());
}

}  // namespace flatmin::optim
