// flatmin's Python face: the _flatmin extension. It shares one LibTorch with `import torch` (Debian's
// python3-torch loads the libtorch-dev libraries this links), so tensors cross without copies and the
// user's closure runs forward and backward on the same autograd engine the C++ step drives.
//
// The Python classes (python/flatmin/optim.py) hold the user's base optimizer; this module holds the
// method: the points, the noise, the restoration of W and the combination, all in C++.
#include <torch/extension.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <torch/optim/optimizer.h>
#include <torch/serialize.h>

#include "bindings.h"
#include "flatmin/core/error.h"
#include "flatmin/core/runtime.h"
#include "flatmin/core/seed.h"
#include "flatmin/geometry/objective.h"
#include "flatmin/geometry/perturbation.h"
#include "flatmin/geometry/spectrum.h"
#include "flatmin/models/scripted.h"
#include "flatmin/noise/noise.h"
#include "flatmin/optim/base_optimizer.h"
#include "flatmin/optim/methods.h"
#include "flatmin/optim/perturbed_optimizer.h"
#include "flatmin/training/checkpoint.h"
#include "flatmin/training/pretrained.h"

namespace py = pybind11;

namespace flatmin::python {
namespace {

// The base optimizer as PerturbedOptimizer sees it: the Python one's step, called once the combination is
// in .grad. Its learning rate and state live in Python; these groups only mirror the parameters.
struct PythonBaseOptions : public torch::optim::OptimizerCloneableOptions<PythonBaseOptions> {
  double lr = 0;
  double get_lr() const override { return lr; }
  void set_lr(const double value) override { lr = value; }
};

class PythonBase : public torch::optim::Optimizer {
 public:
  PythonBase(std::vector<at::Tensor> params, py::function step)
      : torch::optim::Optimizer({torch::optim::OptimizerParamGroup(std::move(params))},
                                std::make_unique<PythonBaseOptions>()),
        step_(std::move(step)) {}
  at::Tensor step(LossClosure) override {
    step_();
    return {};
  }
  void save(torch::serialize::OutputArchive&) const override {}
  void load(torch::serialize::InputArchive&) override {}

 private:
  py::function step_;
};

// One flatmin method over a Python base optimizer.
class Engine {
 public:
  Engine(std::vector<at::Tensor> params, const optim::MethodSpec& spec, uint64_t seed, double max_grad_norm,
         double loss_scale, py::function base_step)
      : params_(nonempty(std::move(params))) {
    check(spec.name() != "bsam", "flatmin.optim: bSAM has its own update rule: use flatmin.optim.BSAM");
    optimizer_ = std::make_shared<optim::PerturbedOptimizer>(std::make_shared<PythonBase>(params_, std::move(base_step)),
                                                             optim::make_method(spec), step_options(seed, max_grad_norm, loss_scale));
  }

  // bSAM: its own update rule (BsamUpdate) as the base, at learning rate α = `lr` (set_lr before a step).
  Engine(std::vector<at::Tensor> params, const optim::MethodSpec& spec, uint64_t seed, double max_grad_norm,
         double loss_scale, double lr)
      : params_(nonempty(std::move(params))) {
    const auto base = optim::BaseOptimizerOptions().name("sgd").lr(lr).momentum(0).weight_decay(0);
    optim::check_base_for_method(spec, base);
    optimizer_ = optim::make_perturbed_optimizer(params_, spec, base, step_options(seed, max_grad_norm, loss_scale));
  }

  void set_loss_scale(double scale) { optimizer_->set_loss_scale(scale); }
  double loss_scale() const { return optimizer_->options().loss_scale(); }
  bool skipped() const { return optimizer_->last_step_skipped(); }

  void set_lr(double lr) {
    for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
  }

  at::Tensor step(const py::object& closure) {
    check(!closure.is_none(),
          "flatmin.optim: step() needs a closure that computes the loss and calls backward(); the method "
          "evaluates the gradient at " + std::to_string(optimizer_->evaluations()) + " point(s)");
    pass_ = 0;
    struct EndOfStep {  // -1 outside a step, whichever way it ends
      int64_t& pass;
      ~EndOfStep() { pass = -1; }
    } end_of_step{pass_};
    return optimizer_->step([&] {
      const py::object result = closure();
      ++pass_;
      check(!result.is_none(), "flatmin.optim: the closure returned None: return the loss tensor");
      check(THPVariable_Check(result.ptr()), "flatmin.optim: the closure returned " +
                                                 py::str(py::type::of(result).attr("__name__")).cast<std::string>() +
                                                 ", not the loss tensor");
      const at::Tensor loss = THPVariable_Unpack(result.ptr());
      check(loss.numel() == 1, "flatmin.optim: the closure's loss has shape " + shape_of(loss) +
                                   ": it must be a scalar (reduce it, e.g. with .mean())");
      bool any_gradient = false;
      for (const auto& p : params_) any_gradient = any_gradient || p.grad().defined();
      check(any_gradient, "flatmin.optim: no parameter has a gradient after the closure: it must call "
                          "loss.backward()");
      return loss.detach();
    });
  }

  void track_buffers(std::vector<at::Tensor> buffers) { optimizer_->track_buffers(std::move(buffers)); }
  void set_scales(std::vector<double> scales) { optimizer_->set_tensor_scales(std::move(scales)); }
  void set_epoch(int64_t epoch, int64_t total) { optimizer_->set_epoch(epoch, total); }
  int64_t evaluations() const { return optimizer_->evaluations(); }
  int64_t current_pass() const { return pass_; }
  int64_t steps() const { return optimizer_->steps_taken(); }
  int64_t gradient_evaluations() const { return optimizer_->gradient_evaluations(); }
  std::string describe() const { return optimizer_->method().describe(); }

  // The method's state (step count, hence the noise stream; the method's own estimates) as bytes, for the
  // Python state_dict; the base optimizer's state is Python's.
  py::bytes state() const {
    torch::serialize::OutputArchive archive;
    optimizer_->save(archive);
    std::ostringstream out;
    archive.save_to(out);
    return py::bytes(out.str());
  }
  void load_state(const std::string& bytes) {
    torch::serialize::InputArchive archive;
    try {
      std::istringstream in(bytes);
      archive.load_from(in);
    } catch (const c10::Error&) {
      throw Error("flatmin.optim: load_state_dict: the 'flatmin' entry is not a flatmin optimizer's state");
    }
    optimizer_->load(archive);
  }

 private:
  static std::string shape_of(const at::Tensor& t) {
    std::ostringstream s;
    s << t.sizes();
    return s.str();
  }
  static std::vector<at::Tensor> nonempty(std::vector<at::Tensor> params) {
    check(!params.empty(), "flatmin.optim: no parameters to optimise");
    return params;
  }
  // Without loss scaling a non-finite step is applied, as torch.optim does; with it, an overflowed step is
  // skipped (W, buffers and the base's state untouched), as GradScaler's step would be.
  static optim::PerturbedOptimizerOptions step_options(uint64_t seed, double max_grad_norm, double loss_scale) {
    return optim::PerturbedOptimizerOptions().seed(seed).max_grad_norm(max_grad_norm).loss_scale(loss_scale).check_finite(
        loss_scale != 1.0);
  }

  std::vector<at::Tensor> params_;
  std::shared_ptr<optim::PerturbedOptimizer> optimizer_;
  int64_t pass_ = -1;  // the evaluation the closure is running, -1 outside a step
};

// Named parameter tensors, as flatmin/geometry.py passes them.
using Parameters = std::vector<std::pair<std::string, at::Tensor>>;

// The objective Σ_b weights[b]·loss(b) of a Python loss: `batch_loss(b)` returns batch b's scalar loss.
geometry::Objective python_objective(const Parameters& parameters,
                                     py::function batch_loss, std::vector<double> weights) {
  std::vector<geometry::NamedParameter> named;
  for (const auto& [name, tensor] : parameters) named.push_back({name, tensor});
  // The measurement runs without the GIL (LibTorch's autograd engine refuses it); each call back into Python
  // takes it, and the function is released under it, whichever copy of the objective goes last.
  const std::shared_ptr<py::function> fn(new py::function(std::move(batch_loss)), [](py::function* f) {
    py::gil_scoped_acquire gil;
    delete f;
  });
  auto loss = [fn](int64_t b) {
    py::gil_scoped_acquire gil;
    const py::object result = (*fn)(b);
    check(THPVariable_Check(result.ptr()), "flatmin.geometry: loss_fn returned " +
                                               py::str(py::type::of(result).attr("__name__")).cast<std::string>() +
                                               ", not a loss tensor");
    const at::Tensor t = THPVariable_Unpack(result.ptr());
    check(t.numel() == 1, "flatmin.geometry: loss_fn's loss has " + std::to_string(t.numel()) +
                              " elements: it must be a scalar (reduce it, e.g. with .mean())");
    return t.reshape({});
  };
  return geometry::Objective(std::move(named), std::move(loss), std::move(weights));
}

// `measure(objective)` on the objective of a Python loss, run with the GIL released: LibTorch's autograd engine
// refuses it, and the loss takes it back for each batch. The result is plain C++, built without Python.
template <typename Measure>
auto measured(const Parameters& parameters, py::function batch_loss, std::vector<double> weights, Measure measure) {
  const geometry::Objective objective = python_objective(parameters, std::move(batch_loss), std::move(weights));
  py::gil_scoped_release no_gil;
  return measure(objective);
}

py::dict trace_dict(const geometry::TraceResult& r) {
  py::dict layers;
  for (const auto& l : r.layers)
    layers[py::str(l.name)] = py::dict(py::arg("trace") = l.trace, py::arg("stderr") = l.std_error,
                                       py::arg("numel") = l.numel);
  return py::dict(py::arg("value") = r.trace, py::arg("stderr") = r.std_error, py::arg("probe_std") = r.probe_std,
                  py::arg("probes") = r.probes, py::arg("hvps") = r.hvps, py::arg("converged") = r.converged,
                  py::arg("per_layer") = layers, py::arg("seconds") = r.seconds);
}

optim::MethodSpec method_spec(const std::string& name, const py::dict& o) {
  optim::MethodSpec spec;
  spec.name(name);
  for (const auto& [key_handle, value] : o) {
    const std::string key = py::str(key_handle);
    if (key == "sigma") spec.sigma(value.cast<double>());
    else if (key == "k") spec.k(value.cast<int64_t>());
    else if (key == "no_negative") spec.two_point(!value.cast<bool>());
    else if (key == "noise") spec.law(noise::parse_noise_law(value.cast<std::string>()));
    else if (key == "rho") spec.rho(value.cast<double>());
    else if (key == "eta") spec.asam_eta(value.cast<double>());
    else if (key == "rsam_sigma") spec.rsam_sigma(value.cast<double>());
    else if (key == "rsam_lambda") spec.rsam_lambda(value.cast<double>());
    else if (key == "alpha") spec.crsam_alpha(value.cast<double>());
    else if (key == "beta") spec.crsam_beta(value.cast<double>());
    else if (key == "train_size") spec.bsam_train_size(value.cast<int64_t>());
    else if (key == "prior_precision") spec.bsam_prior_precision(value.cast<double>());
    else if (key == "damping") spec.bsam_damping(value.cast<double>());
    else if (key == "init_precision") spec.bsam_init_precision(value.cast<double>());
    else if (key == "beta1") spec.bsam_beta1(value.cast<double>());
    else if (key == "beta2") spec.bsam_beta2(value.cast<double>());
    else if (key == "noise_std") spec.bsam_noise_std(value.cast<double>());
    else if (key == "prior_mean") spec.bsam_prior_mean(value.cast<std::string>());
    else if (key == "bn_statistics") spec.bsam_bn_statistics(value.cast<std::string>());
    else throw Error("flatmin.optim: unknown option '" + key + "' for " + name);
  }
  return spec;
}

}  // namespace
}  // namespace flatmin::python

PYBIND11_MODULE(_flatmin, m) {
  using namespace flatmin;
  using flatmin::python::Engine;
  m.doc() = "flatmin's C++ core (use the flatmin package)";
  // One clear message, as a Python ValueError subclass: flatmin.Error.
  static py::exception<Error> error(m, "Error", PyExc_ValueError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      error(e.what());
    }
  });

  py::class_<Engine>(m, "Engine")
      .def(py::init([](std::vector<at::Tensor> params, const std::string& method, const py::dict& options,
                       uint64_t seed, double max_grad_norm, double loss_scale, py::function base_step) {
             return std::make_unique<Engine>(std::move(params), python::method_spec(method, options), seed,
                                             max_grad_norm, loss_scale, std::move(base_step));
           }),
           py::arg("params"), py::arg("method"), py::arg("options"), py::arg("seed"), py::arg("max_grad_norm"),
           py::arg("loss_scale"), py::arg("base_step"))
      .def(py::init([](std::vector<at::Tensor> params, const py::dict& options, uint64_t seed, double max_grad_norm,
                       double loss_scale, double lr) {
             return std::make_unique<Engine>(std::move(params), python::method_spec("bsam", options), seed,
                                             max_grad_norm, loss_scale, lr);
           }),
           py::arg("params"), py::arg("options"), py::arg("seed"), py::arg("max_grad_norm"), py::arg("loss_scale"),
           py::arg("lr"))
      .def_property("loss_scale", &Engine::loss_scale, &Engine::set_loss_scale)
      .def_property_readonly("skipped", &Engine::skipped)
      .def("set_lr", &Engine::set_lr, py::arg("lr"))
      .def("step", &Engine::step, py::arg("closure"))
      .def("track_buffers", &Engine::track_buffers, py::arg("buffers"))
      .def("set_scales", &Engine::set_scales, py::arg("scales"))
      .def("set_epoch", &Engine::set_epoch, py::arg("epoch"), py::arg("total_epochs"))
      .def_property_readonly("evaluations", &Engine::evaluations)
      .def_property_readonly("current_pass", &Engine::current_pass)
      .def_property_readonly("steps", &Engine::steps)
      .def_property_readonly("gradient_evaluations", &Engine::gradient_evaluations)
      .def("describe", &Engine::describe)
      .def("state", &Engine::state)
      .def("load_state", &Engine::load_state, py::arg("state"));

  // The noise of draw `draw` of step `step` for parameter `index` (in parameter order), as the methods draw
  // it: for checking a step by hand.
  m.def(
      "noise",
      [](const std::vector<int64_t>& shape, const std::string& law, double sigma, uint64_t seed, uint64_t step,
         uint64_t draw, uint64_t index) {
        at::Tensor out = at::empty(shape, at::kFloat);
        noise::fill_noise_(out, noise::parse_noise_law(law), sigma, noise::noise_key(seed, step, draw, index));
        return out;
      },
      py::arg("shape"), py::arg("law"), py::arg("sigma"), py::arg("seed"), py::arg("step"), py::arg("draw"),
      py::arg("index"));
  m.def("method_names", &optim::method_names);
  m.def(
      "set_num_threads",
      [](int n) {
        check(n >= 1, "flatmin.set_num_threads: n must be >= 1, got " + std::to_string(n));
        const ThreadCounts t = set_num_threads(n);
        return py::dict(py::arg("torch") = t.torch_intra_op, py::arg("blas") = t.blas);
      },
      py::arg("n"));
  // The seed of each purpose a CLI run with --seed SEED derives: a Python loop reproducing a CLI run takes its
  // batch order from torch.randperm with a generator seeded by "shuffle", its noise from "noise".
  m.def(
      "run_seeds",
      [](uint64_t seed) {
        return py::dict(py::arg("model_init") = derive_seed(seed, SeedStream::kModelInit),
                        py::arg("data_split") = derive_seed(seed, SeedStream::kDataSplit),
                        py::arg("shuffle") = derive_seed(seed, SeedStream::kShuffle),
                        py::arg("noise") = derive_seed(seed, SeedStream::kNoise),
                        py::arg("augment") = derive_seed(seed, SeedStream::kAugment));
      },
      py::arg("seed"));
  m.def("tune_malloc", &tune_malloc_for_training);
  m.def("version", &version_string);

  // A run's (or checkpoint's) model as TorchScript bytes for torch.jit.load, with what its inputs need.
  m.def(
      "load_checkpoint",
      [](const std::string& run_or_checkpoint) {
        const std::string path = training::resolve_init_path(run_or_checkpoint, "run or checkpoint");
        const training::CheckpointContents ck = training::load_checkpoint(path);
        const std::string bytes = models::torchscript_bytes(ck.model, ck.spec);
        return py::dict(py::arg("path") = path, py::arg("script") = py::bytes(bytes), py::arg("model") = ck.spec.name(),
                        py::arg("in_channels") = ck.spec.in_channels(), py::arg("image_size") = ck.spec.image_size(),
                        py::arg("num_classes") = ck.spec.num_classes(), py::arg("mean") = ck.mean_values(),
                        py::arg("std") = ck.std_values(), py::arg("config") = ck.config_json,
                        py::arg("epoch") = ck.epoch, py::arg("checksum") = ck.checksum());
      },
      py::arg("run_or_checkpoint"));

  // Measurements of a Python loss (flatmin/geometry.py prepares the parameters, batches and mode).
  using python::Parameters;
  m.def(
      "hessian_trace",
      [](const Parameters& parameters, py::function batch_loss, std::vector<double> weights, double tol,
         int64_t max_probes, int64_t min_probes, const std::string& stop_rule, uint64_t seed) {
        check(stop_rule == "se" || stop_rule == "pyhessian", "flatmin.geometry: stop_rule '" + stop_rule +
                                                                 "': 'se' (the standard error) or 'pyhessian'");
        const auto options = geometry::TraceOptions()
                                 .rel_tol(tol)
                                 .max_probes(max_probes)
                                 .min_probes(std::min(min_probes, max_probes))
                                 .stop_rule(stop_rule == "pyhessian" ? geometry::TraceStopRule::kPyHessianChange
                                                                     : geometry::TraceStopRule::kStandardError)
                                 .seed(seed);
        return python::trace_dict(python::measured(parameters, std::move(batch_loss), std::move(weights),
                                                   [&](const auto& objective) {
                                                     return geometry::hutchinson_trace(objective, options);
                                                   }));
      },
      py::arg("parameters"), py::arg("batch_loss"), py::arg("weights"), py::arg("tol"), py::arg("max_probes"),
      py::arg("min_probes"), py::arg("stop_rule"), py::arg("seed"));
  m.def(
      "spectral_density",
      [](const Parameters& parameters, py::function batch_loss, std::vector<double> weights, int64_t runs,
         int64_t iterations, int64_t grid_points, uint64_t seed) {
        const auto options = geometry::DensityOptions().runs(runs).iterations(iterations).grid_points(grid_points).seed(seed);
        const geometry::DensityResult r = python::measured(
            parameters, std::move(batch_loss), std::move(weights),
            [&](const auto& objective) { return geometry::spectral_density(objective, options); });
        return py::dict(py::arg("grid") = r.grid, py::arg("density") = r.density, py::arg("bandwidth") = r.bandwidth,
                        py::arg("mass") = r.mass, py::arg("nodes") = r.nodes, py::arg("weights") = r.weights,
                        py::arg("trace_estimate") = r.trace_estimate, py::arg("hvps") = r.hvps,
                        py::arg("seconds") = r.seconds);
      },
      py::arg("parameters"), py::arg("batch_loss"), py::arg("weights"), py::arg("runs"), py::arg("iterations"),
      py::arg("grid_points"), py::arg("seed"));
  m.def(
      "noise_stability_gap",
      [](const Parameters& parameters, py::function batch_loss, std::vector<double> weights, std::vector<double> sigmas,
         int64_t draws, const std::string& law, bool antithetic, double trace, double trace_std_error,
         double trace_tol, int64_t max_probes, uint64_t seed) {
        const auto options = geometry::GapOptions()
                                 .sigmas(std::move(sigmas))
                                 .draws(draws)
                                 .law(noise::parse_noise_law(law))
                                 .antithetic(antithetic)
                                 .seed(seed)
                                 .trace(trace)
                                 .trace_std_error(trace_std_error)
                                 .trace_options(geometry::TraceOptions().rel_tol(trace_tol).max_probes(max_probes).seed(seed));
        const geometry::GapResult r = python::measured(
            parameters, std::move(batch_loss), std::move(weights),
            [&](const auto& objective) { return geometry::perturbation_gap(objective, options); });
        py::list rows;
        for (const auto& row : r.rows)
          rows.append(py::dict(py::arg("sigma") = row.sigma, py::arg("gap") = row.gap, py::arg("gap_std") = row.gap_std,
                               py::arg("gap_stderr") = row.gap_std_error, py::arg("predicted") = row.predicted,
                               py::arg("predicted_stderr") = row.predicted_std_error,
                               py::arg("relative_error") = row.relative_error, py::arg("z") = row.z));
        return py::dict(py::arg("loss") = r.loss, py::arg("trace") = r.trace, py::arg("trace_stderr") = r.trace_std_error,
                        py::arg("draws") = r.draws, py::arg("law") = r.law, py::arg("antithetic") = r.antithetic,
                        py::arg("rows") = rows, py::arg("rss") = r.rss, py::arg("rms_relative_error") = r.rms_relative_error,
                        py::arg("effective_trace") = r.effective_trace, py::arg("warnings") = r.warnings,
                        py::arg("seconds") = r.seconds);
      },
      py::arg("parameters"), py::arg("batch_loss"), py::arg("weights"), py::arg("sigmas"), py::arg("draws"),
      py::arg("law"), py::arg("antithetic"), py::arg("trace"), py::arg("trace_std_error"), py::arg("trace_tol"),
      py::arg("max_probes"), py::arg("seed"));
  m.def(
      "gradient_norm",
      [](const Parameters& parameters, py::function batch_loss, std::vector<double> weights) {
        const geometry::GradientResult r = python::measured(parameters, std::move(batch_loss), std::move(weights),
                                                            [](const auto& objective) { return geometry::gradient(objective); });
        py::dict layers;
        for (size_t i = 0; i < r.names.size(); ++i) layers[py::str(r.names[i])] = r.layer_norms[i];
        return py::dict(py::arg("loss") = r.loss, py::arg("norm") = r.norm, py::arg("per_layer") = layers);
      },
      py::arg("parameters"), py::arg("batch_loss"), py::arg("weights"));
  m.def(
      "pac_bayes_bound",
      [](double train_loss, double test_loss, double alpha, double radius, int64_t n, double loss_bound) {
        const geometry::PacBayesResult r = geometry::pac_bayes_bound(
            geometry::PacBayesInputs().train_loss(train_loss).test_loss(test_loss).alpha(alpha).radius(radius).n(n).loss_bound(
                loss_bound));
        return py::dict(py::arg("complexity") = r.complexity, py::arg("bound") = r.bound,
                        py::arg("predicted_gap") = r.predicted_gap, py::arg("observed_gap") = r.observed_gap);
      },
      py::arg("train_loss"), py::arg("test_loss"), py::arg("alpha"), py::arg("radius"), py::arg("n"),
      py::arg("loss_bound"));
  m.def(
      "top_eigenvalues",
      [](const Parameters& parameters, py::function batch_loss, std::vector<double> weights, int64_t k, double tol,
         int64_t max_iterations, uint64_t seed) {
        const geometry::EigenResult r = python::measured(
            parameters, std::move(batch_loss), std::move(weights), [&](const geometry::Objective& objective) {
              return geometry::top_eigenvalues(
                  objective,
                  geometry::EigenOptions().k(std::min<int64_t>(k, objective.dim())).tol(tol).max_iterations(max_iterations).seed(seed));
            });
        return py::dict(py::arg("values") = r.values, py::arg("residuals") = r.residuals,
                        py::arg("converged") = r.converged, py::arg("iterations") = r.iterations,
                        py::arg("hvps") = r.hvps, py::arg("seconds") = r.seconds);
      },
      py::arg("parameters"), py::arg("batch_loss"), py::arg("weights"), py::arg("k"), py::arg("tol"),
      py::arg("max_iterations"), py::arg("seed"));

  python::bind_jobs(m);
}
