// The options of `flatmin train`, defined once: the CLI's subcommand and Python's flatmin.train parse them.
#include <limits>
#include <set>
#include <string>

#include "flatmin/data/sources.h"
#include "flatmin/jobs/options.h"
#include "flatmin/optim/methods.h"

namespace flatmin::jobs {

void add_train_options(CLI::App& cmd, TrainJob& job) {
  cmd.footer(
      "Every method evaluates the minibatch gradient g at some points around W, combines them into G and hands G\n"
      "to the base optimizer at W (restored exactly); 'cost' = gradient evaluations per step (SGD = 1). Norms are\n"
      "global over all weights, ‖·‖ + 1e-12 in denominators.\n"
      "  sgd     G = g(W).  Cost 1.\n"
      "  wp-sgd  U ~ P (mean 0, std σ per weight), G = g(W+U).  Cost 1.\n"
      "  nso     U_j ~ P, G = 1/(2k)·Σ_j [g(W+U_j) + g(W−U_j)]: minimises E_U[f(W+U)] ≈ f(W) + σ²/2·Tr∇²f(W)\n"
      "          (NSO paper, Algorithm 1); the ±U pair cancels the first-order noise.  Cost 2k.\n"
      "  sam     δ = ρ·g/‖g‖, G = g(W+δ) (Foret et al. 2021).  Cost 2.\n"
      "  usam    δ = ρ·g, G = g(W+δ) (unnormalised SAM).  Cost 2.\n"
      "  asam    T = |W| + η (element-wise), δ = ρ·T²g/‖Tg‖, G = g(W+δ) (Kwon et al. 2021).  Cost 2.\n"
      "  rsam    δ_j = σ·‖W_j‖·z_j per output unit j (z ~ N(0,I); whole tensor for biases), g̃ = g(W+δ),\n"
      "          v = λ·g̃ + δ, ε = ρ·v/‖v‖, G = g(W+ε) (Liu et al. 2022, the authors' code).  Cost 2.\n"
      "  bsam    θ = W + z/√(N·s), g = g(θ), ε = ρ·g/s, G = g(W+ε), h = √s·|g|; its own update replaces the\n"
      "          base optimizer: m ← β1·m + (1−β1)(G + δW), W ← W − lr·m/s, s ← β2·s + (1−β2)(h + γ + δ),\n"
      "          δ = prior precision/N, γ = damping, s starts at the initial precision (Möllenhoff & Khan\n"
      "          2023). --lr is its α (the paper: 0.5-1); --optimizer/--momentum/--weight-decay do not apply.  Cost 2.\n"
      "  crsam   v = g/‖g‖, g_w = g(W+ρv), g_b = g(W−ρv), G = g_w + α(g_w + g_b − 2g) + β(g_w − g_b): SAM plus the\n"
      "          gradient of α·[L(W+ρv)+L(W−ρv)−2L(W)] + β·[L(W+ρv)−L(W−ρv)], the finite-difference curvature and\n"
      "          slope along v of CR-SAM's regulariser, without its logs (as the authors' code).  Cost 3.\n"
      "BatchNorm running statistics move once per step: from the pass at W for sam/usam/asam/crsam, from the\n"
      "random pass W+δ for rsam, the mean of both passes for bsam and of all 2k passes for nso.\n"
      "With every method: --label-smoothing ε (targets (1−ε)·onehot + ε/K), --l2sp λ (adds 2λ(W − W₀) to G at W,\n"
      "W₀ = the initial weights), --augment (random crop after padding, random horizontal flip, seeded).\n\n"
      "Writes <out>/config.json, metrics.csv + metrics.jsonl (one row per epoch, with the cumulative gradient\n"
      "evaluations), summary.json, model.ckpt.\n\n"
      "Examples:\n"
      "  flatmin train                                   # NSO, MLP, Fashion-MNIST, 10 epochs\n"
      "  flatmin train --method sgd --out runs/sgd       # the baseline\n"
      "  flatmin train --sigma 0.02 --k 2 --noise laplace\n"
      "  flatmin train --method sam --rho 0.05           # SAM at NSO's cost (k = 1)\n"
      "  flatmin train --method crsam --crsam-alpha 0.2 --crsam-beta 0.05 --label-smoothing 0.1 --augment\n"
      "  flatmin train --model cnn --per-class 100 --classes 0,1,2,3,4   # small target set");
  cmd.option_defaults()->always_capture_default();

  const std::string method_group = "Method";
  cmd.add_option("--method", job.method(), "sgd | wp-sgd | nso | sam | usam | asam | rsam | bsam | crsam (rules below)")
      ->check(CLI::IsMember(optim::method_names()))
      ->group(method_group);
  cmd.add_option("--sigma", job.sigma(), "Noise std σ per weight (NSO, WP-SGD); the paper's grid: 0.008-0.012")
      ->check(number_at_least(0))
      ->group(method_group);
  cmd.add_option("--k", job.k(), "NSO: perturbations per step (cost 2k)")
      ->check(integer_in(1, 1024))
      ->group(method_group);
  cmd.add_flag("--no-negative", job.no_negative(),
                "NSO ablation: 2k independent one-sided draws instead of k ± pairs (same cost)")
      ->group(method_group);
  cmd.add_option("--noise", job.noise(), "Noise law: gaussian | laplace | uniform | rademacher (alias binomial) | binomial4 (the NSO authors' σ·Binomial(4,½): mean 2σ, not zero)")
      ->check(CLI::IsMember({"gaussian", "laplace", "uniform", "rademacher", "binomial", "binomial4"}))
      ->group(method_group);
  cmd.add_option("--sigma-schedule", job.sigma_schedule(),
                  "constant | linear | exp: warm σ up from 0 (linear) or 1e-5 (exp) per epoch")
      ->check(CLI::IsMember({"constant", "linear", "exp"}))
      ->group(method_group);
  cmd.add_option("--sigma-warmup-epochs", job.sigma_warmup_epochs(), "Warm-up length (0 = the whole run, as the paper)")
      ->check(integer_in(0, 1000000))
      ->group(method_group);

  const std::string sam_group = "SAM family";
  cmd.add_option("--rho", job.rho(),
                  "Radius ρ of sam, usam, asam, rsam, bsam, crsam; default per method: sam/usam/rsam 0.05, asam 0.5, "
                  "bsam 0.01, crsam 0.1 (the NSO paper's grid for sam/rsam/bsam: 0.01, 0.02, 0.05; asam 0.5-2)")
      ->check(number_at_least(0))
      ->default_str("per method")
      ->group(sam_group);
  cmd.add_option("--asam-eta", job.asam_eta(), "ASAM: η in T = |W| + η")->check(number_at_least(0))->group(sam_group);
  cmd.add_option("--rsam-sigma", job.rsam_sigma(),
                  "RSAM: relative noise std σ (δ_j = σ·‖W_j‖·z_j); the NSO paper's grid: 0.008, 0.01, 0.012")
      ->check(number_at_least(0))
      ->group(sam_group);
  cmd.add_option("--rsam-lambda", job.rsam_lambda(), "RSAM: λ in v = λ·g(W+δ) + δ")
      ->check(number_at_least(0))
      ->group(sam_group);
  cmd.add_option("--rsam-sigma-start", job.rsam_sigma_start(),
                  "RSAM: σ rises from this value to --rsam-sigma along a half cosine over the epochs")
      ->check(number_at_least(0))
      ->default_str("off (constant σ)")
      ->group(sam_group);
  cmd.add_option("--rsam-rho-end", job.rsam_rho_end(),
                  "RSAM: ρ falls from --rho to this value along a half cosine over the epochs")
      ->check(number_at_least(0))
      ->default_str("off (constant ρ)")
      ->group(sam_group);
  cmd.add_option("--bsam-train-size", job.bsam_train_size(),
                  "bSAM: N, the number of training examples (× the augmentation factor)")
      ->check(integer_in(0))
      ->default_str("the training split's size")
      ->group(sam_group);
  cmd.add_option("--bsam-prior-precision", job.bsam_prior_precision(),
                  "bSAM: prior precision (δ = it/N, its weight decay; the paper: 25-40)")
      ->check(number_at_least(0))
      ->group(sam_group);
  cmd.add_option("--bsam-damping", job.bsam_damping(), "bSAM: damping γ")->check(number_at_least(0))->group(sam_group);
  cmd.add_option("--bsam-init-precision", job.bsam_init_precision(), "bSAM: initial precision s")
      ->check(number_between(0, std::numeric_limits<double>::infinity(), /*lo_closed=*/false))
      ->group(sam_group);
  cmd.add_option("--bsam-beta1", job.bsam_beta1(), "bSAM: momentum β1")
      ->check(number_between(0, 1, true, /*hi_closed=*/false))
      ->group(sam_group);
  cmd.add_option("--bsam-noise-std", job.bsam_noise_std(),
                  "bSAM: the posterior sample's noise std at the first step, set directly (s₀ = 1/(N·it²), replacing "
                  "--bsam-init-precision); for fine-tuning, near NSO's σ")
      ->check(number_at_least(0))
      ->default_str("off (s₀ = --bsam-init-precision)")
      ->group(sam_group);
  cmd.add_option("--bsam-prior-mean", job.bsam_prior_mean(),
                  "bSAM: the prior's centre: zero (a weight decay), or init (the starting, e.g. pretrained, weights)")
      ->check(CLI::IsMember({"zero", "init"}))
      ->group(sam_group);
  cmd.add_option("--bsam-bn-statistics", job.bsam_bn_statistics(),
                  "bSAM: BatchNorm running statistics from both passes (the authors' code) or from the ascent pass "
                  "only (ω + ε, next to the mean; never the posterior sample)")
      ->check(CLI::IsMember({"both", "ascent"}))
      ->group(sam_group);
  cmd.add_option("--bsam-beta2", job.bsam_beta2(), "bSAM: precision averaging β2")
      ->check(number_between(0, 1, true, /*hi_closed=*/false))
      ->group(sam_group);
  cmd.add_option("--crsam-alpha", job.crsam_alpha(), "CR-SAM: weight α of the curvature term (the paper: 0.1-0.5)")
      ->check(number_at_least(0))
      ->group(sam_group);
  cmd.add_option("--crsam-beta", job.crsam_beta(), "CR-SAM: weight β of the gradient term (the paper: 0.01-0.1)")
      ->check(number_at_least(0))
      ->group(sam_group);

  const std::string reg_group = "Regularisation and augmentation (any method)";
  cmd.add_option("--label-smoothing", job.label_smoothing(),
                  "Label smoothing ε: targets (1−ε)·onehot + ε/K (the NSO paper's grid: 0.1, 0.2, 0.3)")
      ->check(number_between(0, 1, true, /*hi_closed=*/false))
      ->group(reg_group);
  cmd.add_option("--l2sp", job.l2sp(), "L2-SP λ: adds λ·‖W − W₀‖² (W₀ = the initial weights), as 2λ(W − W₀) at W")
      ->check(number_at_least(0))
      ->group(reg_group);
  cmd.add_flag("--augment", job.augment(), "Random crop after padding + random horizontal flip of training batches")
      ->group(reg_group);
  cmd.add_option("--augment-padding", job.augment_padding(), "Padding of the random crop, pixels per side")
      ->check(integer_in(0, 64))
      ->group(reg_group);
  cmd.add_flag("--no-flip", job.no_flip(), "Augmentation without the horizontal flip")->group(reg_group);

  const std::string model_group = "Model";
  cmd.add_option("--model", job.model(), "mlp (784-128-10) | cnn | resnet18 | resnet34 (CIFAR-style, BatchNorm)")
      ->check(CLI::IsMember({"mlp", "cnn", "resnet18", "resnet34"}))
      ->group(model_group);
  cmd.add_option("--width", job.width(), "MLP hidden units / CNN channels / ResNet base width (0 = default)")
      ->check(integer_in(0, 1 << 16))
      ->group(model_group);
  cmd.add_option("--activation", job.activation(),
                  "relu (the papers') | gelu | silu | softplus: the nonlinearity of mlp, cnn and ResNets; a smooth one "
                  "makes the loss twice differentiable everywhere, as the noise-stability expansion assumes")
      ->check(CLI::IsMember({"relu", "gelu", "silu", "softplus"}))
      ->group(model_group);
  cmd.add_option("--model-file", job.model_file(),
                  "Your own model: a TorchScript file (torch.jit.script(model).save(path) in Python), trained from its "
                  "weights; it must map the data's [N, C, H, W] to [N, classes] logits. --freeze works on its "
                  "parameter names; `flatmin export` writes it back")
      ->check(CLI::ExistingFile)
      ->excludes("--width")
      ->excludes("--activation")
      ->group(model_group);

  const std::string data_group = "Data";
  cmd.add_option("--dataset", job.dataset(),
                  "fashion-mnist (Debian's, the default) | idx (MNIST-format files) | cifar10 | cifar100 (binary "
                  "versions) | folder (DIR/<class>/*.png|jpg, or DIR/train/… and DIR/test/…) | tensors (DIR/train.pt "
                  "and DIR/test.pt from torch.save({\"x\": x, \"y\": y}, path)); see docs/DATA.md")
      ->check(CLI::IsMember(data::dataset_kinds()))
      ->group(data_group);
  cmd.add_option("--data-dir", job.data_dir(), "The dataset's directory")
      ->default_str("env FLATMIN_DATA_DIR, else /usr/share/datasets/fashion-mnist (fashion-mnist only)")
      ->group(data_group);
  cmd.add_option("--cifar100-labels", job.cifar100_labels(), "cifar100: fine (100 classes) | coarse (20)")
      ->check(CLI::IsMember({"fine", "coarse"}))
      ->group(data_group);
  cmd.add_option("--image-size", job.image_size(),
                  "folder: resize every image to S×S (antialiased bilinear; 0 = keep, all one square size)")
      ->check(integer_in(0, 4096))
      ->group(data_group);
  cmd.add_option("--cache-dir", job.cache_dir(),
                  "folder: where decoded images are cached ('none' = no cache)")
      ->default_str("env FLATMIN_CACHE_DIR, else ~/.cache/flatmin")
      ->group(data_group);
  cmd.add_option("--val-size", job.val_size(), "Validation examples held out of the training set")
      ->check(integer_in(0))
      ->group(data_group);
  cmd.add_option("--classes", job.classes(), "Keep only these classes, e.g. 0,1,2 (relabelled 0..C-1)")
      ->delimiter(',')
      ->check(integer_in(0, 1 << 20))
      ->group(data_group);
  cmd.add_option("--per-class", job.per_class(), "Training examples per class (0 = all): small target sets")
      ->check(integer_in(0))
      ->group(data_group);
  cmd.add_option("--test-size", job.test_size(), "Random test examples scored (0 = all)")
      ->check(integer_in(0))
      ->group(data_group);
  cmd.add_flag("--no-normalize", job.no_normalize(), "Keep pixels in [0,1] instead of standardising")->group(data_group);
  cmd.add_option("--label-noise", job.label_noise(),
                  "Replace this fraction of the training labels by another class at random (validation and test "
                  "stay clean)")
      ->check(number_between(0, 1, true, /*hi_closed=*/false))
      ->group(data_group);

  const std::string finetune_group = "Fine-tuning";
  cmd.add_option("--init", job.init(),
                  "Start from the weights of a checkpoint (model.ckpt or a run directory): its architecture and data "
                  "normalisation are kept, the classifier is re-initialised when the number of classes differs; "
                  "L2-SP's W0 is then the pretrained weights")
      ->group(finetune_group);
  cmd.add_flag("--reset-head", job.reset_head(), "With --init: re-initialise the classifier even if the classes match")
      ->group(finetune_group);
  cmd.add_option("--freeze", job.freeze(),
                  "With --init: keep these parameters fixed, comma-separated name patterns (glob; a module name "
                  "covers its parameters), e.g. stem,stem_bn,stages.0")
      ->delimiter(',')
      ->group(finetune_group);

  const std::string optim_group = "Optimisation";
  cmd.add_option("--optimizer", job.optimizer(), "Base optimizer: sgd (momentum, L2) | adamw")
      ->check(CLI::IsMember({"sgd", "adamw"}))
      ->group(optim_group);
  cmd.add_option("--epochs", job.epochs())->check(integer_in(1, 100000))->group(optim_group);
  cmd.add_option("--batch-size", job.batch_size())->check(integer_in(1, 1 << 20))->group(optim_group);
  cmd.add_option("--lr", job.lr(), "Learning rate (bsam: its α; the paper: 0.5-1)")
      ->check(number_at_least(0))
      ->default_str("0.05, bsam 0.5")
      ->group(optim_group);
  cmd.add_option("--momentum", job.momentum(), "SGD momentum")->check(number_between(0, 1, true, /*hi_closed=*/false))->group(optim_group);
  cmd.add_flag("--nesterov", job.nesterov(), "SGD: Nesterov momentum")->group(optim_group);
  cmd.add_option("--weight-decay", job.weight_decay())->check(number_at_least(0))->group(optim_group);
  cmd.add_option("--lr-schedule", job.lr_schedule(), "constant | step | cosine (per step, to 0)")
      ->check(CLI::IsMember({"constant", "step", "cosine"}))
      ->group(optim_group);
  cmd.add_option("--lr-step-epochs", job.lr_step_epochs(), "step schedule: decay every N epochs")
      ->check(integer_in(1, 1000000))
      ->group(optim_group);
  cmd.add_option("--lr-gamma", job.lr_gamma(), "step schedule: decay factor in (0, 1]")
      ->check(number_between(0, 1, /*lo_closed=*/false))
      ->group(optim_group);
  cmd.add_option("--max-grad-norm", job.max_grad_norm(), "Clip the combined gradient's norm (0 = off)")
      ->check(number_at_least(0))
      ->group(optim_group);

  const std::string run_group = "Run";
  cmd.add_option("--seed", job.seed(), "One seed for init, split, shuffling and noise: same seed, same run")
      ->group(run_group);
  cmd.add_option("--out", job.out(), "Output directory (default runs/<method>-<model>-seed<seed>)")->group(run_group);
  cmd.add_option("--threads", job.threads(), "Intra-op threads, LibTorch and OpenBLAS (0 = 1 for mlp and cnn, all cores for resnet)")
      ->check(integer_in(0, 1024))
      ->group(run_group);
  cmd.add_option("--progress", job.progress(), "auto (bar on a terminal) | bar | lines | quiet")
      ->check(CLI::IsMember({"auto", "bar", "lines", "quiet"}))
      ->group(run_group);
  cmd.add_option("--train-eval-size", job.train_eval_size(), "Training examples scored with the test set (0 = all)")
      ->check(integer_in(0))
      ->group(run_group);
  cmd.add_option("--eval-batch-size", job.eval_batch_size(),
                  "Examples per evaluation pass (100 measured fastest here; large batches page-fault)")
      ->check(integer_in(1, 1 << 20))
      ->group(run_group);
  cmd.add_option("--eval-every", job.eval_every(),
                  "Validation is scored every epoch, the test set and the training subset after the last; with "
                  "N > 0 also every N epochs (test curves; other rows: NaN)")
      ->check(integer_in(0, 1000000))
      ->group(run_group);
  cmd.add_flag("--no-save-model", job.no_save_model(), "Do not write model.ckpt")->group(run_group);

  const std::string keep_group = "Checkpoints, resuming, divergence";
  cmd.add_option("--checkpoint-every", job.checkpoint_every(),
                  "Also checkpoint every N steps (0 = at epoch ends only); into <out>/checkpoints/")
      ->check(integer_in(0))
      ->group(keep_group);
  cmd.add_option("--keep-checkpoints", job.keep_checkpoints(), "Keep the newest K checkpoints")
      ->check(integer_in(1, 1000))
      ->group(keep_group);
  cmd.add_flag("--no-checkpoints", job.no_checkpoints(), "Write no checkpoints while training")->group(keep_group);
  cmd.add_option("--resume", job.resume(),
                  "Continue the run in DIR from its newest intact checkpoint, with its own config (it ends "
                  "bitwise equal to an uninterrupted run); other run options are not allowed with it")
      ->group(keep_group);
  const std::string geometry_group = "Flatness during training";
  cmd.add_option("--geometry-every", job.geometry_every(),
                  "Every N epochs (and after the last) measure the flatness of the model on a fixed sample of the "
                  "training split into the metrics files (geo_* columns; 0 = off)")
      ->check(integer_in(0))
      ->group(geometry_group);
  cmd.add_option("--geometry-measures", job.geometry_measures(),
                  "Any of trace (Hutchinson, 5% SE or 30 probes), lambda1 (Lanczos), normalized_trace "
                  "(Tr/‖∇L‖², CR-SAM), grad_norm, ratio (CR-SAM's SAM approximation ratio on 50 examples); or all "
                  "(the first four)")
      ->group(geometry_group);
  cmd.add_option("--geometry-splits", job.geometry_splits(),
                  "Splits measured, comma-separated: train (columns geo_*), test (geo_test_*), val (geo_val_*)")
      ->delimiter(',')
      ->check(CLI::IsMember({"train", "val", "test"}))
      ->group(geometry_group);
  cmd.add_option("--geometry-rho", job.geometry_rho(), "ratio: the SAM radius ρ of the approximation ratio")
      ->check(number_between(0, 1e6, false))
      ->group(geometry_group);
  cmd.add_option("--geometry-examples", job.geometry_examples(), "Examples of each split measured (0 = all)")
      ->check(integer_in(0))
      ->group(geometry_group);
  cmd.add_option("--on-divergence", job.on_divergence(),
                  "A non-finite loss or gradient: stop (exit code 3, last good checkpoint kept) | skip the step "
                  "(counted in metrics as skipped_steps)")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->group(keep_group);
  cmd.add_option("--check-finite-every", job.check_finite_every(),
                  "Check the step's finiteness every N steps (0 = every step on the CPU, every 25 on a GPU, where "
                  "each check waits for the device; skip needs every step)")
      ->check(integer_in(0, 1000000))
      ->group(keep_group);

  const std::string device_group = "Device";
  add_device_option(&cmd, &job.device(), device_group);
  add_precision_option(&cmd, &job.precision(), device_group);
  const std::string parallel_group = "Several processes (flatmin launch --nproc N -- train ..., or torchrun's variables)";
  cmd.add_option("--parallel", job.parallel(),
                  "data: each process takes its shard of every batch, gradients averaged | perturbation (nso, "
                  "wp-sgd): each process evaluates its share of the step's points on the whole batch")
      ->check(CLI::IsMember({"data", "perturbation"}))
      ->group(parallel_group);
  cmd.add_option("--sam-ascent", job.sam_ascent(),
                  "Data-parallel SAM family: the ascent from the averaged gradient (synced) or from each process's "
                  "own (per-replica, SAM's m-sharpness)")
      ->check(CLI::IsMember({"synced", "per-replica"}))
      ->group(parallel_group);
  cmd.add_option("--dist-timeout", job.dist_timeout(),
                  "Seconds to wait for the other processes (rendezvous, each collective) before failing")
      ->check(number_between(1, 86400))
      ->group(parallel_group);
}

void finish_train_options(const CLI::App& cmd, TrainJob& job) {
  job.parallel_given() = cmd.count("--parallel") > 0;
  job.sam_ascent_given() = cmd.count("--sam-ascent") > 0;
  if (!job.resume().empty()) {
    // Everything that shapes a run comes from its checkpoint; say so rather than ignore a user's option.
    static const std::set<std::string> allowed{"--resume", "--progress", "--threads", "--data-dir", "--cache-dir", "--keep-checkpoints",
                                               "--checkpoint-every", "--no-save-model", "--device",
                                               "--check-finite-every", "--parallel", "--sam-ascent",
                                               "--dist-timeout"};
    for (const CLI::Option* option : cmd.get_options())
      if (option->count() > 0 && !option->get_lnames().empty() && !allowed.count("--" + option->get_lnames().front()))
        throw CLI::ValidationError("--resume", "--" + option->get_lnames().front() +
                                                   " cannot be combined with --resume (the run keeps its own config)");
  }
  if (!job.model_file().empty()) {
    if (cmd.count("--model") > 0 || !job.init().empty())
      throw CLI::ValidationError("--model-file", "--model-file is the model: it cannot be combined with --model or --init");
    job.model() = "torchscript";
  }
  if (!job.init().empty()) {
    job.model_given() = cmd.count("--model") > 0;
    job.width_given() = cmd.count("--width") > 0;
    job.activation_given() = cmd.count("--activation") > 0;
  } else {
    if (cmd.count("--reset-head") > 0) throw CLI::ValidationError("--reset-head", "--reset-head needs --init");
    if (cmd.count("--freeze") > 0 && job.model_file().empty())
      throw CLI::ValidationError("--freeze", "--freeze needs --init (or --model-file)");
  }
}

}  // namespace flatmin::jobs
