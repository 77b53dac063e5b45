// Thin RAII layer over the HDF5 C API. Every failure names the file and object.
//
// HDF5 here is not thread-safe: one thread owns every HDF5 call.
#pragma once

#include <hdf5.h>

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kr::io::h5 {

// Silences HDF5's own error printing; kr reports errors itself.
void quiet_errors();

class Handle {
 public:
  Handle() = default;
  Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~Handle() { reset(); }
  Handle(Handle&& other) noexcept : id_(other.id_), close_(other.close_) { other.id_ = -1; }
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      close_ = other.close_;
      other.id_ = -1;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  hid_t release() {
    const hid_t id = id_;
    id_ = -1;
    return id;
  }
  void reset() {
    if (id_ >= 0 && close_) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

class File {
 public:
  static File create(const std::string& path);  // truncates
  static File open_read(const std::string& path);
  hid_t id() const { return handle_.get(); }
  const std::string& path() const { return path_; }
  void close();  // flushes and closes; errors are reported

 private:
  Handle handle_;
  std::string path_;
};

Handle create_group(const File& file, const std::string& name);
bool exists(const File& file, const std::string& name);

struct WriteOptions {
  std::vector<hsize_t> chunk;  // empty: contiguous
  int gzip_level = 0;          // 0: none
  bool fletcher32 = false;
};

// Writes a contiguous CPU tensor (uint8, int64 or float32) as a dataset.
void write_tensor(const File& file, const std::string& name, const at::Tensor& tensor,
                  const WriteOptions& options = {});

// Reads a whole dataset whose element type must match `dtype` (uint8, int64 or float32),
// checking the rank when `expected_rank` >= 0.
at::Tensor read_tensor(const File& file, const std::string& name, at::ScalarType dtype,
                       int expected_rank = -1);

// One source of a virtual dataset: rows [first, first + rows) of the virtual
// dataset come from `dataset` in `file` (a path relative to the virtual file's
// directory, or absolute).
struct VirtualSource {
  std::string file;
  std::string dataset;
  hsize_t first = 0;
  hsize_t rows = 0;
};

// Creates a virtual dataset (HDF5 VDS) of shape `dims` over `sources`, stacked
// along dim 0; unmapped or unreadable rows read as `fill`.
void write_virtual(const File& file, const std::string& name, at::ScalarType dtype,
                   const std::vector<hsize_t>& dims, const std::vector<VirtualSource>& sources,
                   double fill);

std::vector<hsize_t> dataset_shape(const File& file, const std::string& name);

// Attributes on the object `object` ("/" for the root).
void set_attr(const File& file, const std::string& object, const std::string& name,
              const std::string& value);
void set_attr(const File& file, const std::string& object, const std::string& name,
              std::int64_t value);
void set_attr(const File& file, const std::string& object, const std::string& name,
              const std::vector<std::string>& values);
bool has_attr(const File& file, const std::string& object, const std::string& name);
std::string get_string_attr(const File& file, const std::string& object, const std::string& name);
std::int64_t get_int_attr(const File& file, const std::string& object, const std::string& name);
std::vector<std::string> get_strings_attr(const File& file, const std::string& object,
                                          const std::string& name);

}  // namespace kr::io::h5
