#include "kr/io/png.hpp"

#include <png.h>

#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"

namespace kr::io {

namespace {

struct WriteState {
  std::string bytes;
};

void append_bytes(png_structp png, png_bytep data, png_size_t length) {
  auto* state = static_cast<WriteState*>(png_get_io_ptr(png));
  state->bytes.append(reinterpret_cast<const char*>(data), length);
}

void ignore_flush(png_structp) {}

[[noreturn]] void on_png_error(png_structp png, png_const_charp message) {
  auto* text = static_cast<std::string*>(png_get_error_ptr(png));
  if (text) *text = message;
  png_longjmp(png, 1);
}

void on_png_warning(png_structp, png_const_charp) {}

}  // namespace

std::string encode_png(const at::Tensor& image) {
  if (image.scalar_type() != torch::kUInt8 || image.dim() != 3 ||
      (image.size(0) != 1 && image.size(0) != 3))
    throw Error("encode_png: expected a uint8 (1 or 3, H, W) image");
  const auto channels = image.size(0);
  const auto height = image.size(1);
  const auto width = image.size(2);
  auto interleaved = image.permute({1, 2, 0}).contiguous();
  std::string error;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &error, on_png_error, on_png_warning);
  if (!png) throw Error("encode_png: out of memory");
  png_infop info = png_create_info_struct(png);
  WriteState state;
  std::vector<png_bytep> rows(static_cast<std::size_t>(height));
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw Error("encode_png: " + error);
  }
  png_set_write_fn(png, &state, append_bytes, ignore_flush);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  auto* base = interleaved.data_ptr<std::uint8_t>();
  for (std::int64_t y = 0; y < height; ++y) rows[y] = base + y * width * channels;
  png_set_rows(png, info, rows.data());
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  png_destroy_write_struct(&png, &info);
  return state.bytes;
}

void write_png(const std::string& path, const at::Tensor& image) {
  std::string bytes;
  try {
    bytes = encode_png(image);
  } catch (const Error& error) {
    throw Error(path + ": " + error.what());
  }
  write_file_atomic(path, bytes);
}

at::Tensor read_png(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
  if (!file) throw Error(path + ": cannot open");
  unsigned char signature[8];
  if (std::fread(signature, 1, 8, file.get()) != 8 || png_sig_cmp(signature, 0, 8) != 0)
    throw Error(path + ": not a PNG file");
  std::string error;
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, on_png_error, on_png_warning);
  png_infop info = png_create_info_struct(png);
  at::Tensor image;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(path + ": corrupt PNG: " + error);
  }
  png_init_io(png, file.get());
  png_set_sig_bytes(png, 8);
  png_read_png(png, info,
               PNG_TRANSFORM_STRIP_16 | PNG_TRANSFORM_PACKING | PNG_TRANSFORM_STRIP_ALPHA, nullptr);
  const auto width = static_cast<std::int64_t>(png_get_image_width(png, info));
  const auto height = static_cast<std::int64_t>(png_get_image_height(png, info));
  const auto channels = static_cast<std::int64_t>(png_get_channels(png, info));
  if (channels != 1 && channels != 3) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(path + ": unsupported PNG colour type");
  }
  auto rows = png_get_rows(png, info);
  image = torch::empty({height, width, channels}, torch::kUInt8);
  for (std::int64_t y = 0; y < height; ++y)
    std::memcpy(image.data_ptr<std::uint8_t>() + y * width * channels, rows[y],
                static_cast<std::size_t>(width * channels));
  png_destroy_read_struct(&png, &info, nullptr);
  return image.permute({2, 0, 1}).contiguous();
}

at::Tensor make_grid(const at::Tensor& images, std::int64_t columns, std::int64_t border) {
  const auto count = images.size(0);
  const auto channels = images.size(1);
  const auto height = images.size(2);
  const auto width = images.size(3);
  const auto rows = (count + columns - 1) / columns;
  auto grid = torch::full(
      {channels, rows * (height + border) + border, columns * (width + border) + border}, 128,
      torch::kUInt8);
  for (std::int64_t i = 0; i < count; ++i) {
    const auto y = border + (i / columns) * (height + border);
    const auto x = border + (i % columns) * (width + border);
    grid.narrow(1, y, height).narrow(2, x, width).copy_(images[i]);
  }
  return grid;
}

}  // namespace kr::io
