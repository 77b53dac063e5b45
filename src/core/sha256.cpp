#include "kr/core/sha256.hpp"

#include <openssl/evp.h>

#include <cstdio>
#include <vector>

#include "kr/core/cost.hpp"
#include "kr/core/error.hpp"

namespace kr {

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
  bool finished = false;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1) {
    throw Error("sha256: OpenSSL could not initialise a digest context");
  }
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(impl_->ctx);
}

void Sha256::update(const void* bytes, std::size_t count) {
  if (impl_->finished) throw Error("sha256: update after hex_digest");
  EVP_DigestUpdate(impl_->ctx, bytes, count);
}

std::string Sha256::hex_digest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(impl_->ctx, digest, &length);
  impl_->finished = true;
  static const char* hex = "0123456789abcdef";
  std::string out;
  out.reserve(2 * length);
  for (unsigned int i = 0; i < length; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

std::string sha256_bytes(const void* bytes, std::size_t count) {
  Sha256 hash;
  hash.update(bytes, count);
  return hash.hex_digest();
}

std::string sha256_string(const std::string& bytes) {
  return sha256_bytes(bytes.data(), bytes.size());
}

std::string sha256_file(const std::string& path) {
  const cost::Scope io(cost::Part::io);
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) throw Error(path + ": cannot open for hashing");
  Sha256 hash;
  std::vector<unsigned char> buffer(1 << 20);
  std::size_t got = 0;
  while ((got = std::fread(buffer.data(), 1, buffer.size(), file)) > 0)
    hash.update(buffer.data(), got);
  const bool failed = std::ferror(file);
  std::fclose(file);
  if (failed) throw Error(path + ": read error while hashing");
  return hash.hex_digest();
}

}  // namespace kr
