#pragma once
// The communicator concept: how statistics that span ranks (global token counts, group means,
// advantage whitening moments) are summed across data-parallel workers.
//
//   c.all_reduce_sum(values)   values: std::span<double> of n elements; on return every rank
//                              holds, in place, the element-wise sum of all ranks' values.
//                              Every rank must call it with the same n (a collective call).
//   c.rank()                   this worker's index in [0, size())
//   c.size()                   number of workers (>= 1)
//
// Where the memory behind `values` lives is the communicator's execution tag,
// communicator_exec_t<C>: exec::host unless C declares `using exec_type = exec::cuda;` (the NCCL
// communicator sums device memory on its stream).
//
// Models in the library:
//   dist::single_process_communicator (this header)  one worker: all_reduce_sum is the identity
//   dist::mpi_communicator   (<posttrain/mpi.hpp>)    MPI_Allreduce over an MPI_Comm, host memory
//   dist::nccl_communicator  (<posttrain/nccl.cuh>)   ncclAllReduce over an ncclComm_t, device
//                                                     memory
//
// assert_communicator<C>() turns a failed check into one plain sentence per missing member.
#include <concepts>
#include <span>
#include <type_traits>
#include <utility>

#include "posttrain/config.hpp"
#include "posttrain/core/exec.hpp"

POSTTRAIN_NAMESPACE_BEGIN

namespace dist {

namespace detail {

template <class C>
concept has_all_reduce_sum = requires(C& c, std::span<double> values) {
  c.all_reduce_sum(values);
};

template <class C>
concept has_rank = requires(const C& c) {
  { c.rank() } -> std::convertible_to<int>;
};

template <class C>
concept has_size = requires(const C& c) {
  { c.size() } -> std::convertible_to<int>;
};

template <class C>
struct exec_of {
  using type = exec::host;
};
template <class C>
  requires requires { typename C::exec_type; }
struct exec_of<C> {
  using type = typename C::exec_type;
};

}  // namespace detail

template <class C>
concept communicator = detail::has_all_reduce_sum<C> && detail::has_rank<C> && detail::has_size<C>;

// The memory a communicator reduces: exec::host or exec::cuda.
template <class C>
using communicator_exec_t = typename detail::exec_of<std::remove_cvref_t<C>>::type;

// Readable diagnostics: `static_assert(dist::assert_communicator<my_comm>());`.
template <class C>
constexpr bool assert_communicator() {
  static_assert(detail::has_all_reduce_sum<C>,
                "a posttrain communicator needs a member all_reduce_sum(std::span<double>) that "
                "replaces the values, in place, by their element-wise sum over all ranks");
  static_assert(detail::has_rank<C>,
                "a posttrain communicator needs a const member rank() returning this worker's "
                "index as an int");
  static_assert(detail::has_size<C>,
                "a posttrain communicator needs a const member size() returning the number of "
                "workers as an int");
  static_assert(is_execution_tag_v<communicator_exec_t<C>>,
                "a posttrain communicator's exec_type must be exec::host or exec::cuda");
  return communicator<C>;
}

// One worker: the sum over ranks of a value is the value itself.
struct single_process_communicator {
  using exec_type = exec::host;

  void all_reduce_sum(std::span<double> /*values*/) const noexcept {}
  int rank() const noexcept { return 0; }
  int size() const noexcept { return 1; }
};

static_assert(assert_communicator<single_process_communicator>());

}  // namespace dist

POSTTRAIN_NAMESPACE_END
