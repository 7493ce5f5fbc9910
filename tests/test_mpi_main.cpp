// GoogleTest main for tests that run under mpirun. MPI is initialised once
// (by the communicator) for the whole binary; every rank runs every test,
// and the process exits non-zero if any rank saw a failure.
#include <gtest/gtest.h>

#include "runtime/mpi_communicator.h"
#include "tests/mpi_test_support.h"

namespace clx::testing_support {
MpiCommunicator* world = nullptr;
}

int main(int argc, char** argv) {
  clx::MpiCommunicator world;
  clx::testing_support::world = &world;
  ::testing::InitGoogleTest(&argc, argv);
  if (world.rank() != 0) {
    // Only rank 0 prints the usual report; other ranks print failures only.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  int failed = RUN_ALL_TESTS();
  torch::Tensor any_failed = torch::tensor({static_cast<int64_t>(failed != 0)});
  world.allreduce(any_failed, clx::ReduceOp::Max);
  return any_failed.item<int64_t>() != 0 ? 1 : 0;
}
