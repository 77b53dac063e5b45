#include "kr/cli/main.hpp"

int main(int argc, char** argv) {
  return kr::cli::main(argc, argv);
}
