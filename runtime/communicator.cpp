#include "runtime/communicator.h"

#include <cstdlib>

#include "runtime/error.h"
#ifdef CLX_HAVE_MPI
#include "runtime/mpi_communicator.h"
#endif
#ifdef CLX_HAVE_NCCL
#include "runtime/nccl_communicator.h"
#endif

namespace clx {

void SingleCommunicator::abort(int exit_code) { std::_Exit(exit_code); }

bool launched_by_mpi_launcher() {
  // Open MPI's mpirun, PMIx (srun --mpi=pmix, newer launchers), and PMI-1/2.
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

std::vector<std::string> compiled_backends() {
  std::vector<std::string> names{"single"};
#ifdef CLX_HAVE_MPI
  names.push_back("mpi");
#endif
#ifdef CLX_HAVE_NCCL
  names.push_back("nccl");
#endif
  return names;
}

std::unique_ptr<Communicator> make_control_communicator() {
  if (!launched_by_mpi_launcher()) return std::make_unique<SingleCommunicator>();
#ifdef CLX_HAVE_MPI
  return std::make_unique<MpiCommunicator>();
#else
  throw Error("started by mpirun/srun, but this build has no MPI communicator (CMake found no MPI): run one "
              "process without a launcher, or rebuild with MPI");
#endif
}

bool nccl_compiled() {
#ifdef CLX_HAVE_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_nccl_communicator(Communicator& control) {
#ifdef CLX_HAVE_NCCL
  return std::make_unique<NcclCommunicator>(control);
#else
  throw Error("run.backend=nccl: this build has no NCCL communicator (CMake found no CUDA toolkit with NCCL; see "
              "docs/gpu.md)");
#endif
}

std::unique_ptr<Communicator> make_communicator(const std::string& backend) {
  std::string chosen = backend;
  if (chosen == "auto") chosen = launched_by_mpi_launcher() ? "mpi" : "single";
  if (chosen == "single") return std::make_unique<SingleCommunicator>();
#ifdef CLX_HAVE_MPI
  if (chosen == "mpi") return std::make_unique<MpiCommunicator>();
#endif
#ifdef CLX_HAVE_NCCL
  if (chosen == "nccl") return std::make_unique<NcclCommunicator>(make_control_communicator());
#endif
  std::string available;
  for (const auto& name : compiled_backends()) available += " " + name;
  throw Error("run.backend: '" + backend + "' is not available in this build (available: auto" + available + ")");
}

}  // namespace clx
