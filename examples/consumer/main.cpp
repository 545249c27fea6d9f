// One NSO step on a tiny regression, through the installed flatmin package.
#include <iostream>

#include <flatmin/flatmin.h>
#include <torch/torch.h>

int main() {
  torch::manual_seed(0);
  torch::nn::Linear net(4, 1);
  const at::Tensor x = torch::randn({32, 4}), y = torch::randn({32, 1});
  auto base = std::make_shared<torch::optim::SGD>(net->parameters(), torch::optim::SGDOptions(0.1));
  flatmin::optim::PerturbedOptimizer opt(base, std::make_shared<flatmin::optim::Nso>(flatmin::optim::NsoOptions(0.01)));
  auto loss_fn = [&] { return torch::mse_loss(net->forward(x), y); };
  const double before = loss_fn().item<double>();
  for (int step = 0; step < 20; ++step)
    opt.step([&] {
      auto loss = loss_fn();
      loss.backward();
      return loss;
    });
  const double after = loss_fn().item<double>();
  std::cout << "consumer: loss " << before << " -> " << after << " after " << opt.gradient_evaluations()
            << " gradient evaluations\n";
  return after < before ? 0 : 1;
}
