#pragma once
// buffer<S>: a row-major [rows, cols] activation / gradient matrix whose allocation only grows.
// The trunk's [N, ·] matrices change shape with every batch (N = the batch's token count, or its
// deduplicated row count): an Eigen::Matrix frees and reallocates on every such resize, and the
// fresh pages are faulted in and cleared by the kernel (≈ 10 % of a GRPO step in `perf`). A
// buffer keeps its storage when it shrinks and reallocates only to grow, so a run of batches of
// similar sizes reuses the same pages. It IS an Eigen::Map over that storage (blocks, products,
// noalias() work as on a matrix); resize() re-seats the map (Eigen's documented placement-new
// idiom for changing a Map's array). Contents are unspecified after a resize, like Eigen's.
#include <new>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "parameters.hpp"

namespace reference_model {

template <class S>
class buffer : public Eigen::Map<matrix<S>, Eigen::AlignedMax> {
  using base = Eigen::Map<matrix<S>, Eigen::AlignedMax>;

 public:
  buffer() : base(nullptr, 0, 0) {}
  buffer(const buffer& o) : base(nullptr, 0, 0), store_(o.store_) { rebind(o.rows(), o.cols()); }
  buffer(buffer&& o) noexcept : base(nullptr, 0, 0), store_(std::move(o.store_)) {
    rebind(o.rows(), o.cols());
    o.rebind(0, 0);
  }
  buffer& operator=(const buffer& o) {
    if (this != &o) {
      store_ = o.store_;
      rebind(o.rows(), o.cols());
    }
    return *this;
  }
  buffer& operator=(buffer&& o) noexcept {
    if (this != &o) {
      store_ = std::move(o.store_);
      rebind(o.rows(), o.cols());
      o.rebind(0, 0);
    }
    return *this;
  }
  using base::operator=;  // coefficient assignment from expressions, as a matrix

  void resize(index_t rows, index_t cols) {
    const auto need = static_cast<std::size_t>(rows * cols);
    if (need > store_.size()) store_.resize(need);  // grows only; never shrinks
    rebind(rows, cols);
  }
  void setZero(index_t rows, index_t cols) {
    resize(rows, cols);
    base::setZero();
  }
  using base::setZero;
  std::size_t capacity() const { return store_.size(); }

 private:
  void rebind(index_t rows, index_t cols) {
    new (static_cast<base*>(this)) base(store_.data(), rows, cols);
  }
  std::vector<S, Eigen::aligned_allocator<S>> store_;
};

}  // namespace reference_model
