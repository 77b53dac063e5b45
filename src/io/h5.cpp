#include "kr/io/h5.hpp"

#include <torch/torch.h>

#include "kr/core/cost.hpp"
#include "kr/core/error.hpp"
#include "kr/core/fs.hpp"

namespace kr::io::h5 {

namespace {

hid_t native_type(at::ScalarType dtype) {
  switch (dtype) {
    case at::kByte:
      return H5T_NATIVE_UINT8;
    case at::kLong:
      return H5T_NATIVE_INT64;
    case at::kFloat:
      return H5T_NATIVE_FLOAT;
    case at::kInt:
      return H5T_NATIVE_INT32;
    default:
      throw Error("hdf5: unsupported tensor type " + std::string(c10::toString(dtype)));
  }
}

[[noreturn]] void fail(const File& file, const std::string& what) {
  throw Error(file.path() + ": " + what);
}

void check(herr_t status, const File& file, const std::string& what) {
  if (status < 0) fail(file, what);
}

Handle open_object(const File& file, const std::string& object) {
  hid_t id = H5Oopen(file.id(), object.c_str(), H5P_DEFAULT);
  if (id < 0) fail(file, "no object '" + object + "'");
  return Handle(id, H5Oclose);
}

Handle open_attr(const File& file, const std::string& object, const std::string& name) {
  auto owner = open_object(file, object);
  hid_t id = H5Aopen(owner.get(), name.c_str(), H5P_DEFAULT);
  if (id < 0) fail(file, "object '" + object + "' has no attribute '" + name + "'");
  return Handle(id, H5Aclose);
}

void replace_attr(hid_t owner, const std::string& name) {
  if (H5Aexists(owner, name.c_str()) > 0) H5Adelete(owner, name.c_str());
}

}  // namespace

void quiet_errors() {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
}

// Note [Reproducible files]
// HDF5 stores an object's creation and modification times in its header unless
// told not to. Every object kr creates (the root group, groups, datasets) has
// time tracking off, so a file's bytes are a function of what was written: two
// runs that write the same shard write the same file, checkable with sha256sum.
namespace {
void untracked_times(hid_t plist, const std::string& path) {
  if (H5Pset_obj_track_times(plist, false) < 0)
    throw Error(path + ": cannot turn off HDF5 object time tracking");
}
}  // namespace

File File::create(const std::string& path) {
  const cost::Scope io(cost::Part::io);
  File file;
  file.path_ = path;
  Handle fcpl(H5Pcreate(H5P_FILE_CREATE), H5Pclose);
  untracked_times(fcpl.get(), path);
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT);
  if (id < 0) throw Error(path + ": cannot create HDF5 file");
  file.handle_ = Handle(id, H5Fclose);
  return file;
}

File File::open_read(const std::string& path) {
  const cost::Scope io(cost::Part::io);
  File file;
  file.path_ = path;
  if (!path_exists(path)) throw Error(path + ": no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    throw Error(path + ": missing, unreadable or not an HDF5 file");
  }
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0) throw Error(path + ": cannot open HDF5 file (corrupt or truncated?)");
  file.handle_ = Handle(id, H5Fclose);
  return file;
}

void File::close() {
  if (!handle_.valid()) return;
  const cost::Scope io(cost::Part::io);
  if (H5Fflush(handle_.get(), H5F_SCOPE_GLOBAL) < 0) throw Error(path_ + ": HDF5 flush failed");
  if (H5Fclose(handle_.release()) < 0) throw Error(path_ + ": HDF5 close failed");
}

Handle create_group(const File& file, const std::string& name) {
  Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
  untracked_times(gcpl.get(), file.path());
  hid_t id = H5Gcreate2(file.id(), name.c_str(), H5P_DEFAULT, gcpl.get(), H5P_DEFAULT);
  if (id < 0) fail(file, "cannot create group '" + name + "'");
  return Handle(id, H5Gclose);
}

bool exists(const File& file, const std::string& name) {
  // Walk the path so that a missing parent is "absent", not an error.
  std::string prefix;
  std::size_t start = name[0] == '/' ? 1 : 0;
  while (start <= name.size()) {
    auto end = name.find('/', start);
    if (end == std::string::npos) end = name.size();
    prefix = name.substr(0, end);
    if (H5Lexists(file.id(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    start = end + 1;
  }
  return true;
}

void write_tensor(const File& file, const std::string& name, const at::Tensor& tensor,
                  const WriteOptions& options) {
  const cost::Scope io(cost::Part::io);
  auto data = tensor.contiguous();
  std::vector<hsize_t> dims(data.sizes().begin(), data.sizes().end());
  Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Handle plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  untracked_times(plist.get(), file.path());
  if (!options.chunk.empty() && data.numel() > 0) {
    std::vector<hsize_t> chunk = options.chunk;
    for (std::size_t d = 0; d < chunk.size(); ++d)
      chunk[d] = std::max<hsize_t>(1, std::min(chunk[d], dims[d]));
    check(H5Pset_chunk(plist.get(), static_cast<int>(chunk.size()), chunk.data()), file,
          "cannot set chunking for '" + name + "'");
    if (options.fletcher32) check(H5Pset_fletcher32(plist.get()), file, "fletcher32 unavailable");
    if (options.gzip_level > 0) {
      check(H5Pset_shuffle(plist.get()), file, "shuffle filter unavailable");
      check(H5Pset_deflate(plist.get(), options.gzip_level), file, "gzip filter unavailable");
    }
  }
  Handle dataset(H5Dcreate2(file.id(), name.c_str(), native_type(data.scalar_type()), space.get(),
                            H5P_DEFAULT, plist.get(), H5P_DEFAULT),
                 H5Dclose);
  if (!dataset.valid()) fail(file, "cannot create dataset '" + name + "'");
  if (data.numel() > 0) {
    check(H5Dwrite(dataset.get(), native_type(data.scalar_type()), H5S_ALL, H5S_ALL, H5P_DEFAULT,
                   data.data_ptr()),
          file, "cannot write dataset '" + name + "'");
  }
}

void write_virtual(const File& file, const std::string& name, at::ScalarType dtype,
                   const std::vector<hsize_t>& dims, const std::vector<VirtualSource>& sources,
                   double fill) {
  const cost::Scope io(cost::Part::io);
  const hid_t type = native_type(dtype);
  const int rank = static_cast<int>(dims.size());
  Handle space(H5Screate_simple(rank, dims.data(), nullptr), H5Sclose);
  Handle plist(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  untracked_times(plist.get(), file.path());
  const std::int64_t fill_int = static_cast<std::int64_t>(fill);
  const float fill_float = static_cast<float>(fill);
  const std::uint8_t fill_byte = static_cast<std::uint8_t>(fill);
  const void* fill_value = dtype == at::kLong    ? static_cast<const void*>(&fill_int)
                           : dtype == at::kFloat ? static_cast<const void*>(&fill_float)
                                                 : static_cast<const void*>(&fill_byte);
  check(H5Pset_fill_value(plist.get(), type, fill_value), file,
        "cannot set the fill value of '" + name + "'");
  for (const auto& source : sources) {
    std::vector<hsize_t> source_dims = dims;
    source_dims[0] = source.rows;
    Handle source_space(H5Screate_simple(rank, source_dims.data(), nullptr), H5Sclose);
    std::vector<hsize_t> start(dims.size(), 0);
    start[0] = source.first;
    Handle selection(H5Scopy(space.get()), H5Sclose);
    check(H5Sselect_hyperslab(selection.get(), H5S_SELECT_SET, start.data(), nullptr,
                              source_dims.data(), nullptr),
          file, "bad virtual selection for '" + name + "'");
    check(H5Pset_virtual(plist.get(), selection.get(), source.file.c_str(), source.dataset.c_str(),
                         source_space.get()),
          file, "cannot map " + source.file + " into '" + name + "'");
  }
  Handle dataset(
      H5Dcreate2(file.id(), name.c_str(), type, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT),
      H5Dclose);
  if (!dataset.valid()) fail(file, "cannot create virtual dataset '" + name + "'");
}

std::vector<hsize_t> dataset_shape(const File& file, const std::string& name) {
  if (!exists(file, name)) fail(file, "missing dataset '" + name + "'");
  Handle dataset(H5Dopen2(file.id(), name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!dataset.valid()) fail(file, "cannot open dataset '" + name + "'");
  Handle space(H5Dget_space(dataset.get()), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) fail(file, "bad dataspace for '" + name + "'");
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

at::Tensor read_tensor(const File& file, const std::string& name, at::ScalarType dtype,
                       int expected_rank) {
  const cost::Scope io(cost::Part::io);
  const auto dims = dataset_shape(file, name);
  if (expected_rank >= 0 && static_cast<int>(dims.size()) != expected_rank) {
    fail(file, "dataset '" + name + "' has " + std::to_string(dims.size()) +
                   " dimensions, expected " + std::to_string(expected_rank));
  }
  Handle dataset(H5Dopen2(file.id(), name.c_str(), H5P_DEFAULT), H5Dclose);
  Handle stored_type(H5Dget_type(dataset.get()), H5Tclose);
  Handle wanted(H5Tcopy(native_type(dtype)), H5Tclose);
  const auto stored_class = H5Tget_class(stored_type.get());
  const bool same_class =
      stored_class == H5Tget_class(wanted.get()) &&
      H5Tget_size(stored_type.get()) == H5Tget_size(wanted.get()) &&
      (stored_class != H5T_INTEGER || H5Tget_sign(stored_type.get()) == H5Tget_sign(wanted.get()));
  if (!same_class) {
    fail(file, "dataset '" + name + "' has the wrong element type (expected " +
                   std::string(c10::toString(dtype)) + ")");
  }
  // Refuse sizes the file cannot hold before allocating (untrusted input).
  hsize_t elements = 1;
  for (auto d : dims) {
    if (d != 0 && elements > (hsize_t{1} << 40) / d)
      fail(file, "dataset '" + name + "' is implausibly large");
    elements *= d;
  }
  std::vector<int64_t> sizes(dims.begin(), dims.end());
  auto out = torch::empty(sizes, torch::TensorOptions().dtype(dtype));
  if (elements == 0) return out;
  if (H5Dread(dataset.get(), native_type(dtype), H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data_ptr()) <
      0) {
    fail(file, "cannot read dataset '" + name + "' (corrupt, truncated or checksum mismatch)");
  }
  return out;
}

void set_attr(const File& file, const std::string& object, const std::string& name,
              const std::string& value) {
  auto owner = open_object(file, object);
  replace_attr(owner.get(), name);
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<std::size_t>(1, value.size()));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(
      H5Acreate2(owner.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
      H5Aclose);
  if (!attr.valid()) fail(file, "cannot create attribute '" + name + "'");
  std::string padded = value.empty() ? std::string(1, '\0') : value;
  check(H5Awrite(attr.get(), type.get(), padded.data()), file,
        "cannot write attribute '" + name + "'");
}

void set_attr(const File& file, const std::string& object, const std::string& name,
              std::int64_t value) {
  auto owner = open_object(file, object);
  replace_attr(owner.get(), name);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  Handle attr(
      H5Acreate2(owner.get(), name.c_str(), H5T_STD_I64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT),
      H5Aclose);
  if (!attr.valid()) fail(file, "cannot create attribute '" + name + "'");
  check(H5Awrite(attr.get(), H5T_NATIVE_INT64, &value), file,
        "cannot write attribute '" + name + "'");
}

void set_attr(const File& file, const std::string& object, const std::string& name,
              const std::vector<std::string>& values) {
  auto owner = open_object(file, object);
  replace_attr(owner.get(), name);
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  hsize_t count = values.size();
  Handle space(H5Screate_simple(1, &count, nullptr), H5Sclose);
  Handle attr(
      H5Acreate2(owner.get(), name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
      H5Aclose);
  if (!attr.valid()) fail(file, "cannot create attribute '" + name + "'");
  std::vector<const char*> pointers;
  for (const auto& value : values) pointers.push_back(value.c_str());
  if (!pointers.empty()) {
    check(H5Awrite(attr.get(), type.get(), pointers.data()), file,
          "cannot write attribute '" + name + "'");
  }
}

bool has_attr(const File& file, const std::string& object, const std::string& name) {
  auto owner = open_object(file, object);
  return H5Aexists(owner.get(), name.c_str()) > 0;
}

std::string get_string_attr(const File& file, const std::string& object, const std::string& name) {
  auto attr = open_attr(file, object, name);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING)
    fail(file, "attribute '" + name + "' is not a string");
  if (H5Tis_variable_str(type.get()) > 0) {
    char* value = nullptr;
    Handle memtype(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(memtype.get(), H5T_VARIABLE);
    check(H5Aread(attr.get(), memtype.get(), &value), file, "cannot read attribute '" + name + "'");
    std::string out = value ? value : "";
    H5free_memory(value);
    return out;
  }
  const auto size = H5Tget_size(type.get());
  std::string out(size, '\0');
  check(H5Aread(attr.get(), type.get(), out.data()), file, "cannot read attribute '" + name + "'");
  out.resize(out.find('\0') == std::string::npos ? out.size() : out.find('\0'));
  return out;
}

std::int64_t get_int_attr(const File& file, const std::string& object, const std::string& name) {
  auto attr = open_attr(file, object, name);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    fail(file, "attribute '" + name + "' is not an integer");
  std::int64_t value = 0;
  check(H5Aread(attr.get(), H5T_NATIVE_INT64, &value), file,
        "cannot read attribute '" + name + "'");
  return value;
}

std::vector<std::string> get_strings_attr(const File& file, const std::string& object,
                                          const std::string& name) {
  auto attr = open_attr(file, object, name);
  Handle space(H5Aget_space(attr.get()), H5Sclose);
  const auto count = H5Sget_simple_extent_npoints(space.get());
  if (count < 0) fail(file, "bad attribute '" + name + "'");
  std::vector<char*> pointers(static_cast<std::size_t>(count), nullptr);
  Handle memtype(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(memtype.get(), H5T_VARIABLE);
  if (count > 0) {
    check(H5Aread(attr.get(), memtype.get(), pointers.data()), file,
          "cannot read attribute '" + name + "'");
  }
  std::vector<std::string> out;
  for (char* pointer : pointers) {
    out.emplace_back(pointer ? pointer : "");
    H5free_memory(pointer);
  }
  return out;
}

}  // namespace kr::io::h5
