#include "kr/io/idx.hpp"

#include <torch/torch.h>
#include <zlib.h>

#include <cstring>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"

namespace kr::io {

std::string read_maybe_gzip(const std::string& path) {
  std::string raw = read_file(path);
  if (raw.size() < 2 || static_cast<unsigned char>(raw[0]) != 0x1f ||
      static_cast<unsigned char>(raw[1]) != 0x8b) {
    return raw;
  }
  // Inflate incrementally: memory grows with the data actually present, never
  // with a size some header claims.
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 32) != Z_OK) throw Error(path + ": zlib initialisation failed");
  stream.next_in = reinterpret_cast<Bytef*>(raw.data());
  stream.avail_in = static_cast<uInt>(raw.size());
  std::string out;
  char buffer[1 << 16];
  int status = Z_OK;
  while (status != Z_STREAM_END) {
    stream.next_out = reinterpret_cast<Bytef*>(buffer);
    stream.avail_out = sizeof buffer;
    status = inflate(&stream, Z_NO_FLUSH);
    if (status != Z_OK && status != Z_STREAM_END) {
      inflateEnd(&stream);
      throw Error(path + ": corrupt or truncated gzip data");
    }
    out.append(buffer, sizeof buffer - stream.avail_out);
    if (status == Z_OK && stream.avail_in == 0 && stream.avail_out != 0) {
      inflateEnd(&stream);
      throw Error(path + ": truncated gzip data");
    }
  }
  inflateEnd(&stream);
  return out;
}

namespace {

struct IdxHeader {
  std::vector<std::int64_t> dims;
  std::size_t payload_offset = 0;
};

std::uint32_t big_endian_u32(const std::string& bytes, std::size_t offset) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + offset);
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) |
         p[3];
}

IdxHeader parse_header(const std::string& bytes, const std::string& path, int expected_dims) {
  if (bytes.size() < 4) throw Error(path + ": too short for an IDX header");
  const auto* magic = reinterpret_cast<const unsigned char*>(bytes.data());
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != expected_dims) {
    char found[16];
    std::snprintf(found, sizeof found, "%02x%02x%02x%02x", magic[0], magic[1], magic[2], magic[3]);
    throw Error(path + ": wrong IDX magic 0x" + found + ", expected 0x000008" +
                (expected_dims == 3 ? "03 (uint8 images)" : "01 (uint8 labels)"));
  }
  IdxHeader header;
  header.payload_offset = 4 + 4 * static_cast<std::size_t>(expected_dims);
  if (bytes.size() < header.payload_offset) throw Error(path + ": truncated IDX header");
  std::uint64_t payload = 1;
  for (int d = 0; d < expected_dims; ++d) {
    const std::uint32_t dim = big_endian_u32(bytes, 4 + 4 * d);
    header.dims.push_back(dim);
    payload *= dim;
    if (payload > bytes.size()) break;  // overflow guard: cannot fit anyway
  }
  const std::uint64_t present = bytes.size() - header.payload_offset;
  if (payload > present) {
    throw Error(path + ": truncated payload: header declares " + std::to_string(payload) +
                " bytes, file holds " + std::to_string(present));
  }
  if (payload < present) {
    throw Error(path + ": " + std::to_string(present - payload) +
                " unexpected bytes after the payload");
  }
  return header;
}

}  // namespace

at::Tensor read_idx_images(const std::string& path, bool transpose) {
  const std::string bytes = read_maybe_gzip(path);
  const auto header = parse_header(bytes, path, 3);
  const auto count = header.dims[0];
  const auto height = header.dims[1];
  const auto width = header.dims[2];
  auto images = torch::empty({count, 1, height, width}, torch::kUInt8);
  std::memcpy(images.data_ptr(), bytes.data() + header.payload_offset,
              static_cast<std::size_t>(images.numel()));
  if (transpose) images = images.transpose(2, 3).contiguous();
  return images;
}

at::Tensor read_idx_labels(const std::string& path) {
  const std::string bytes = read_maybe_gzip(path);
  const auto header = parse_header(bytes, path, 1);
  auto labels = torch::empty({header.dims[0]}, torch::kUInt8);
  std::memcpy(labels.data_ptr(), bytes.data() + header.payload_offset,
              static_cast<std::size_t>(labels.numel()));
  return labels.to(torch::kInt64);
}

}  // namespace kr::io
