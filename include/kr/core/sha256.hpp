// SHA-256 of files and byte ranges (OpenSSL EVP), as lowercase hex.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace kr {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* bytes, std::size_t count);
  std::string hex_digest();  // finalises; the object cannot be updated afterwards

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string sha256_bytes(const void* bytes, std::size_t count);
std::string sha256_string(const std::string& bytes);
std::string sha256_file(const std::string& path);

}  // namespace kr
