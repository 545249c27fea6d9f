#include "flatmin/optim/methods.h"

#include <cmath>
#include <sstream>

#include <ATen/ATen.h>

#include "flatmin/core/error.h"
#include "flatmin/optim/bsam.h"
#include "flatmin/optim/sam.h"

namespace flatmin::optim {
namespace {

void validate(const NoiseOptions& options) { options.sigma().validate(); }

// A two-valued bSAM option given as text: false for `off`, true for `on`, else an error naming both.
bool bsam_choice(const std::string& value, const std::string& what, const char* off, const char* on) {
  check(value == off || value == on, "bsam: " + what + " '" + value + "': " + off + " or " + on);
  return value == on;
}

// params ← W + U_draw in one pass, U regenerable from (seed, step, draw, tensor): no buffer holds it.
void move_to_noisy_point(StepContext& ctx, const NoiseOptions& options, double sigma, int64_t draw) {
  for (size_t j = 0; j < ctx.params.size(); ++j)
    noise::add_noise_(ctx.params[j], ctx.anchor[j], options.law(), sigma * ctx.scale(j),
                      noise::noise_key(ctx.seed, static_cast<uint64_t>(ctx.step), static_cast<uint64_t>(draw), j));
}

std::string noise_description(const NoiseOptions& options, double sigma) {
  std::ostringstream out;
  out << "sigma=" << sigma << " law=" << noise::to_string(options.law());
  if (options.sigma().kind() != noise::ScheduleKind::kConstant)
    out << " schedule=" << noise::to_string(options.sigma().kind()) << "(to " << options.sigma().sigma() << ")";
  return out.str();
}

}  // namespace

WpSgd::WpSgd(NoiseOptions options) : options_(std::move(options)) {
  validate(options_);
  sigma_ = options_.sigma().at(0, 1);
}

void WpSgd::move_to(int64_t i, StepContext& ctx) { move_to_noisy_point(ctx, options_, sigma_, 0); }

void WpSgd::set_epoch(int64_t epoch, int64_t total_epochs) { sigma_ = options_.sigma().at(epoch, total_epochs); }

std::string WpSgd::describe() const { return "wp-sgd " + noise_description(options_, sigma_); }

Nso::Nso(NsoOptions options) : options_(std::move(options)) {
  validate(options_.noise());
  check(options_.k() >= 1, "NSO: k (perturbations per step) must be >= 1, got " + std::to_string(options_.k()));
  sigma_ = options_.noise().sigma().at(0, 1);
}

void Nso::move_to(int64_t i, StepContext& ctx) {
  if (options_.two_point() && i % 2 == 1) {
    // W − U = 2W − (W + U): the parameters hold W + U from the previous evaluation.
    for (size_t j = 0; j < ctx.params.size(); ++j) ctx.params[j].neg_().add_(ctx.anchor[j], 2.0);
    return;
  }
  move_to_noisy_point(ctx, options_.noise(), sigma_, options_.two_point() ? i / 2 : i);
}

void Nso::set_epoch(int64_t epoch, int64_t total_epochs) { sigma_ = options_.noise().sigma().at(epoch, total_epochs); }

std::string Nso::describe() const {
  std::ostringstream out;
  out << "nso k=" << options_.k() << (options_.two_point() ? " two-point " : " one-sided(no-negative) ")
      << noise_description(options_.noise(), sigma_);
  return out.str();
}

const std::vector<std::string>& method_names() {
  static const std::vector<std::string> names{"sgd", "wp-sgd", "nso", "sam", "usam", "asam", "rsam", "bsam", "crsam"};
  return names;
}

double default_rho(const std::string& method) {
  if (method == "sam" || method == "usam" || method == "rsam") return 0.05;
  if (method == "asam") return 0.5;
  if (method == "bsam") return 0.01;
  if (method == "crsam") return 0.1;
  return 0.0;
}

double resolved_rho(const MethodSpec& spec) { return spec.rho() < 0 ? default_rho(spec.name()) : spec.rho(); }

std::shared_ptr<PerturbationMethod> make_method(const MethodSpec& spec) {
  NoiseOptions noise = NoiseOptions(spec.sigma()).law(spec.law());
  noise.sigma().kind(spec.sigma_schedule()).warmup_epochs(spec.sigma_warmup_epochs());
  const double rho = resolved_rho(spec);
  if (spec.name() == "sgd") return std::make_shared<NoPerturbation>();
  if (spec.name() == "wp-sgd") return std::make_shared<WpSgd>(noise);
  if (spec.name() == "nso") return std::make_shared<Nso>(NsoOptions().noise(noise).k(spec.k()).two_point(spec.two_point()));
  if (spec.name() == "sam") return std::make_shared<Sam>(SamOptions(rho));
  if (spec.name() == "usam") return std::make_shared<Usam>(SamOptions(rho));
  if (spec.name() == "asam") return std::make_shared<Asam>(AsamOptions(rho).eta(spec.asam_eta()));
  if (spec.name() == "rsam")
    return std::make_shared<Rsam>(RsamOptions(rho)
                                      .sigma(spec.rsam_sigma())
                                      .lambda(spec.rsam_lambda())
                                      .sigma_start(spec.rsam_sigma_start())
                                      .rho_end(spec.rsam_rho_end()));
  if (spec.name() == "bsam")
    return std::make_shared<Bsam>(BsamOptions(spec.bsam_train_size())
                                      .rho(rho)
                                      .prior_precision(spec.bsam_prior_precision())
                                      .damping(spec.bsam_damping())
                                      .init_precision(spec.bsam_init_precision())
                                      .beta1(spec.bsam_beta1())
                                      .beta2(spec.bsam_beta2())
                                      .noise_std(spec.bsam_noise_std())
                                      .prior_at_init(bsam_choice(spec.bsam_prior_mean(), "prior mean", "zero", "init"))
                                      .statistics_from_ascent(
                                          bsam_choice(spec.bsam_bn_statistics(), "BatchNorm statistics", "both", "ascent")));
  if (spec.name() == "crsam")
    return std::make_shared<CrSam>(CrSamOptions(rho).alpha(spec.crsam_alpha()).beta(spec.crsam_beta()));
  std::string valid;
  for (const auto& n : method_names()) valid += (valid.empty() ? "" : ", ") + n;
  throw Error("unknown method '" + spec.name() + "' (valid: " + valid + ")");
}

void check_base_for_method(const MethodSpec& spec, const BaseOptimizerOptions& base) {
  if (spec.name() != "bsam") return;
  check(base.name() == "sgd", "bsam brings its own update rule: the base optimizer '" + base.name() + "' does not apply");
  check(base.weight_decay() == 0,
        "bsam: weight decay does not apply: its prior precision (prior_precision/N) is its weight decay");
  check(!base.nesterov(), "bsam: Nesterov momentum does not apply (bSAM's beta1 is its momentum)");
}

std::shared_ptr<PerturbedOptimizer> make_perturbed_optimizer(std::vector<at::Tensor> params, const MethodSpec& spec,
                                                             const BaseOptimizerOptions& base,
                                                             PerturbedOptimizerOptions options) {
  auto method = make_method(spec);
  check_base_for_method(spec, base);
  std::shared_ptr<torch::optim::Optimizer> update;
  if (auto bsam = std::dynamic_pointer_cast<Bsam>(method)) {
    update = std::make_shared<BsamUpdate>(std::move(params), bsam, BsamUpdateOptions(base.lr()));
  } else {
    update = make_base_optimizer(std::move(params), base);
  }
  return std::make_shared<PerturbedOptimizer>(update, method, options);
}

}  // namespace flatmin::optim
