// Writes a small dataset of every kind flatmin reads under DIR, for the command-line tests:
//   make_datasets DIR     → DIR/cifar10, DIR/cifar100, DIR/folder, DIR/tensors, DIR/idx
#include <iostream>

#include "data/dataset_files.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_datasets DIR\n";
    return 2;
  }
  flatmin::testing::write_all_kinds(argv[1]);
  return 0;
}
