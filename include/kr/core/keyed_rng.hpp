// Counter-based random streams keyed by what a draw is for.
//
// Note [Keyed random streams]
// Every per-sample random draw (crop offset, flip, diffusion time and noise,
// label drop, GAN latent, dropout) comes from a stream keyed by
// (run seed, purpose, epoch or step, global sample index). The draw therefore
// does not depend on the rank count, the batch a sample lands in, or which
// thread prepared it: the property behind "N ranks x B/N equals 1 rank x B",
// bit-exact resume, and rank-count-independent regeneration.
#pragma once

#include <cmath>
#include <cstdint>
#include <utility>

namespace kr {

// Two independent standard normals by Box-Muller from a source of uniforms in [0, 1)
// (53 random bits): the keyed streams' normal() and DP-SGD's OS-CSPRNG noise.
template <class Uniform>
std::pair<double, double> box_muller(Uniform&& uniform) {
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  const double radius = std::sqrt(-2.0 * std::log(u1));
  return {radius * std::cos(2.0 * M_PI * u2), radius * std::sin(2.0 * M_PI * u2)};
}

enum class Purpose : std::uint64_t {
  shuffle = 1,
  split = 2,
  crop = 3,
  flip = 4,
  diffusion_time = 5,
  diffusion_noise = 6,
  label_drop = 7,
  gan_latent = 8,
  gan_label = 9,
  ddim_noise = 10,
  dropout = 11,
  init = 12,
  mix = 13,
  shadow_drop = 14,
  gan_latent_pair = 15,
  dp_sampling = 16,
  dp_noise = 17,
};

// SplitMix64 finaliser: a bijective 64-bit mixer.
constexpr std::uint64_t mix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr std::uint64_t stream_key(std::uint64_t seed, Purpose purpose, std::uint64_t epoch_or_step,
                                   std::uint64_t global_index) {
  std::uint64_t key = mix64(seed);
  key = mix64(key ^ static_cast<std::uint64_t>(purpose));
  key = mix64(key ^ epoch_or_step);
  return mix64(key ^ global_index);
}

// A small sequential generator over one key (SplitMix64 sequence).
class KeyedRng {
 public:
  explicit constexpr KeyedRng(std::uint64_t key) : state_(key) {}
  constexpr std::uint64_t next() {
    state_ += 0x9e3779b97f4a7c15ULL;
    std::uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform integer in [0, n) by rejection (no modulo bias); n > 0.
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = ~std::uint64_t{0} - (~std::uint64_t{0} % n);
    std::uint64_t x = next();
    while (x >= limit) x = next();
    return x % n;
  }
  // Standard normal by Box-Muller (both values used in turn).
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const auto [first, second] = box_muller([this] { return uniform(); });
    spare_ = second;
    has_spare_ = true;
    return first;
  }
  // Gamma(shape, 1) by Marsaglia and Tsang's squeeze method; shape < 1 boosted
  // through Gamma(shape + 1) * U^(1 / shape).
  double gamma(double shape) {
    if (shape < 1.0) {
      double u = uniform();
      while (u <= 0.0) u = uniform();
      return gamma(shape + 1.0) * std::pow(u, 1.0 / shape);
    }
    const double d = shape - 1.0 / 3.0;
    const double c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x = normal();
      double v = 1.0 + c * x;
      if (v <= 0.0) continue;
      v = v * v * v;
      const double u = uniform();
      const double x2 = x * x;
      if (u < 1.0 - 0.0331 * x2 * x2) return d * v;
      if (u > 0.0 && std::log(u) < 0.5 * x2 + d * (1.0 - v + std::log(v))) return d * v;
    }
  }
  // Beta(a, b) as G_a / (G_a + G_b).
  double beta(double a, double b) {
    const double x = gamma(a);
    const double y = gamma(b);
    return x / (x + y);
  }

 private:
  std::uint64_t state_;
  double spare_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace kr
