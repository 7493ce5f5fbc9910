#pragma once
#include "runtime/mpi_communicator.h"
#include "runtime/trainer.h"
#include "tests/trainer_test_support.h"

namespace clx::testing_support {
// The job's world communicator, set up by test_mpi_main.cpp.
extern MpiCommunicator* world;

}  // namespace clx::testing_support
