#pragma once

namespace kr::cli {

// The `kr` program: `kr <step> [options]`. Returns the process exit code.
int main(int argc, char** argv);

}  // namespace kr::cli
