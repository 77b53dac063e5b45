// PNG files through libpng, and sample grids.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace kr::io {

// Writes a uint8 image (C, H, W) with C = 1 (grey) or 3 (RGB), through a
// temporary name and rename.
void write_png(const std::string& path, const at::Tensor& image);
// PNG bytes of the same, for embedding.
std::string encode_png(const at::Tensor& image);
// Reads an 8-bit grey or RGB PNG into uint8 (C, H, W); errors name the file.
at::Tensor read_png(const std::string& path);

// Tiles uint8 images (N, C, H, W) into one image, `columns` per row, with a
// `border`-pixel grey frame between them.
at::Tensor make_grid(const at::Tensor& images, std::int64_t columns, std::int64_t border = 2);

}  // namespace kr::io
