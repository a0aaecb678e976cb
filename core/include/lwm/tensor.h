// A dense, row-major, CPU-resident tensor. It either owns its bytes or views bytes owned by
// someone else (a memory-mapped weight file), whose lifetime it extends through `keep_alive`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lwm/dtype.h"

namespace lwm {

using Shape = std::vector<std::int64_t>;

std::int64_t shape_numel(const Shape& shape) noexcept;
// "[32, 4096]".
std::string shape_string(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;

  // New owned storage, zero-filled.
  static Tensor zeros(DType dtype, Shape shape);
  // A view of external bytes; `keep_alive` holds whatever owns them.
  static Tensor view(DType dtype, Shape shape, const void* data, std::shared_ptr<const void> keep_alive);
  // Owned float32 copy of `values` with the given shape (numel must match).
  static Tensor from_floats(Shape shape, const std::vector<float>& values);

  bool defined() const noexcept { return data_ != nullptr || numel() == 0; }
  DType dtype() const noexcept { return dtype_; }
  const Shape& shape() const noexcept { return shape_; }
  int rank() const noexcept { return static_cast<int>(shape_.size()); }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  std::int64_t numel() const noexcept { return shape_numel(shape_); }
  std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }

  const void* raw() const noexcept { return data_; }
  // Mutable access; throws for views of read-only (mapped) memory.
  void* mutable_raw();

  // Typed access to float32 tensors; throws if the dtype is not f32.
  const float* f32() const;
  float* mutable_f32();

  // Rows [begin, end) along the first axis, sharing storage.
  Tensor slice_rows(std::int64_t begin, std::int64_t end) const;
  // Same bytes, new shape with the same element count.
  Tensor reshaped(Shape shape) const;
  // Owned copy converted to `dtype`.
  Tensor to(DType dtype) const;
  // All elements widened to float32 (a copy).
  std::vector<float> to_floats() const;

 private:
  DType dtype_ = DType::f32;
  Shape shape_;
  const void* data_ = nullptr;
  bool writable_ = false;
  std::shared_ptr<const void> storage_;
};

}  // namespace lwm
