#include "kr/io/npz.hpp"

#include <torch/torch.h>
#include <zip.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <regex>

#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"

namespace kr::io {

namespace {

std::string dict_value(const std::string& header, const std::string& key, const std::string& what) {
  const auto at = header.find("'" + key + "'");
  if (at == std::string::npos) throw Error(what + ": .npy header lacks '" + key + "'");
  const auto colon = header.find(':', at);
  if (colon == std::string::npos) throw Error(what + ": malformed .npy header");
  return header.substr(colon + 1);
}

std::int64_t item_size(const std::string& descr, const std::string& what) {
  static const std::regex pattern("^[<>|=]?[uif]([1248])$");
  std::smatch match;
  if (!std::regex_match(descr, match, pattern))
    throw Error(what + ": unsupported dtype '" + descr + "'");
  if (descr[0] == '>' && descr.back() != '1')
    throw Error(what + ": big-endian dtype '" + descr + "' unsupported");
  return std::stoll(match[1]);
}

// CRC-32 (IEEE 802.3, reflected, as zip stores it) of `bytes`.
std::uint32_t crc32_of(const std::string& bytes) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> entries{};
    for (std::uint32_t n = 0; n < 256; ++n) {
      std::uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      entries[n] = c;
    }
    return entries;
  }();
  std::uint32_t crc = 0xFFFFFFFFu;
  for (const unsigned char byte : bytes) crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

}  // namespace

NpyArray parse_npy(const std::string& bytes, const std::string& what) {
  static const char magic[] = "\x93NUMPY";
  if (bytes.size() < 10 || std::memcmp(bytes.data(), magic, 6) != 0)
    throw Error(what + ": not a .npy array");
  const int major = static_cast<unsigned char>(bytes[6]);
  std::size_t header_length = 0;
  std::size_t header_start = 0;
  if (major == 1) {
    header_length =
        static_cast<unsigned char>(bytes[8]) | (static_cast<unsigned char>(bytes[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(what + ": truncated .npy header");
    header_length = 0;
    for (int i = 3; i >= 0; --i)
      header_length = (header_length << 8) | static_cast<unsigned char>(bytes[8 + i]);
    header_start = 12;
  } else {
    throw Error(what + ": unsupported .npy version " + std::to_string(major));
  }
  if (bytes.size() < header_start + header_length) throw Error(what + ": truncated .npy header");
  const std::string header = bytes.substr(header_start, header_length);

  NpyArray array;
  const std::string descr_text = dict_value(header, "descr", what);
  const auto quote = descr_text.find('\'');
  const auto quote_end = descr_text.find('\'', quote + 1);
  if (quote == std::string::npos || quote_end == std::string::npos)
    throw Error(what + ": malformed 'descr'");
  array.descr = descr_text.substr(quote + 1, quote_end - quote - 1);
  const std::string order = dict_value(header, "fortran_order", what);
  if (order.find("True") < order.find(','))
    throw Error(what + ": Fortran-ordered arrays are not supported");
  const std::string shape_text = dict_value(header, "shape", what);
  const auto open = shape_text.find('(');
  const auto close = shape_text.find(')');
  if (open == std::string::npos || close == std::string::npos)
    throw Error(what + ": malformed 'shape'");
  const std::string dims = shape_text.substr(open + 1, close - open - 1);
  std::uint64_t elements = 1;
  static const std::regex number("[0-9]+");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it) {
    const auto dim = std::stoll(it->str());
    array.shape.push_back(dim);
    elements *= static_cast<std::uint64_t>(dim);
    if (elements > bytes.size()) break;
  }
  const std::uint64_t expected =
      elements * static_cast<std::uint64_t>(item_size(array.descr, what));
  const std::uint64_t present = bytes.size() - header_start - header_length;
  if (expected != present) {
    throw Error(what + ": payload holds " + std::to_string(present) +
                " bytes, shape and dtype declare " + std::to_string(expected) +
                (expected > present ? " (truncated)" : ""));
  }
  array.payload = bytes.substr(header_start + header_length);
  return array;
}

std::map<std::string, NpyArray> read_npz(const std::string& path) {
  int error = 0;
  zip_t* archive = zip_open(path.c_str(), ZIP_RDONLY | ZIP_CHECKCONS, &error);
  if (!archive) {
    if (!path_exists(path)) throw Error(path + ": no such file");
    zip_error_t zerror;
    zip_error_init_with_code(&zerror, error);
    std::string message = zip_error_strerror(&zerror);
    zip_error_fini(&zerror);
    throw Error(path + ": not a readable .npz (zip) archive: " + message);
  }
  std::map<std::string, NpyArray> arrays;
  const std::uint64_t archive_bytes = file_size(path);
  try {
    const zip_int64_t entries = zip_get_num_entries(archive, 0);
    for (zip_int64_t i = 0; i < entries; ++i) {
      zip_stat_t stat;
      if (zip_stat_index(archive, i, 0, &stat) != 0)
        throw Error(path + ": unreadable entry " + std::to_string(i));
      std::string name = stat.name;
      if (name.size() < 4 || name.substr(name.size() - 4) != ".npy") continue;
      const std::string what = path + ":" + name;
      // Deflate cannot expand beyond ~1032:1; a larger claim is a corrupt or hostile header.
      if (stat.size > archive_bytes * 1100 + (1 << 20))
        throw Error(what + ": implausible uncompressed size");
      zip_file_t* member = zip_fopen_index(archive, i, 0);
      if (!member) throw Error(what + ": cannot open archive member");
      std::string bytes(stat.size, '\0');
      const zip_int64_t got = zip_fread(member, bytes.data(), stat.size);
      zip_fclose(member);
      if (got < 0 || static_cast<zip_uint64_t>(got) != stat.size)
        throw Error(what + ": truncated or corrupt member");
      // libzip checks the CRC only on a read past the end; check it here, as numpy does.
      if (!(stat.valid & ZIP_STAT_CRC)) throw Error(what + ": member has no CRC-32");
      const std::uint32_t crc = crc32_of(bytes);
      if (crc != stat.crc) {
        char text[64];
        std::snprintf(text, sizeof text, "CRC-32 %08x, archive says %08x", crc, stat.crc);
        throw Error(what + ": corrupt member (" + text + ")");
      }
      arrays[name.substr(0, name.size() - 4)] = parse_npy(bytes, what);
    }
  } catch (...) {
    zip_discard(archive);
    throw;
  }
  zip_discard(archive);
  return arrays;
}

at::Tensor npy_images(const NpyArray& array, const std::string& what) {
  if (array.descr != "|u1" && array.descr != "<u1" && array.descr != "u1") {
    throw Error(what + ": images must be uint8, found dtype '" + array.descr + "'");
  }
  auto flat = torch::empty({static_cast<std::int64_t>(array.payload.size())}, torch::kUInt8);
  std::memcpy(flat.data_ptr(), array.payload.data(), array.payload.size());
  if (array.shape.size() == 3)
    return flat.view({array.shape[0], 1, array.shape[1], array.shape[2]});
  if (array.shape.size() == 4 && (array.shape[3] == 1 || array.shape[3] == 3)) {
    return flat.view(array.shape).permute({0, 3, 1, 2}).contiguous();
  }
  throw Error(what + ": images must have shape (N,H,W) or (N,H,W,C) with C in {1,3}");
}

at::Tensor npy_labels(const NpyArray& array, const std::string& what) {
  const bool column = array.shape.size() == 2 && array.shape[1] == 1;
  if (array.shape.size() != 1 && !column) {
    throw Error(what +
                ": labels must have shape (N) or (N,1) (multi-label sets are not supported)");
  }
  const char kind = array.descr[array.descr.size() - 2];
  const auto size = item_size(array.descr, what);
  if (kind == 'f') throw Error(what + ": labels must be integers, found '" + array.descr + "'");
  const std::int64_t count = array.shape[0];
  auto labels = torch::empty({count}, torch::kInt64);
  auto* out = labels.data_ptr<std::int64_t>();
  const auto* raw = reinterpret_cast<const unsigned char*>(array.payload.data());
  for (std::int64_t i = 0; i < count; ++i) {
    std::uint64_t value = 0;
    std::memcpy(&value, raw + i * size, static_cast<std::size_t>(size));  // little endian host
    std::int64_t signed_value = static_cast<std::int64_t>(value);
    if (kind == 'i' && size < 8 && (value >> (8 * size - 1)) & 1)
      signed_value -= std::int64_t{1} << (8 * size);
    out[i] = signed_value;
  }
  return labels;
}

}  // namespace kr::io
