#pragma once
// A small fixed pool of host threads for data loading (image decoding): one
// job at a time, items handed out one by one so slow files do not stall a
// whole share. Worker threads never call LibTorch.
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace clx {

class WorkerPool {
 public:
  // `workers` threads; 0 runs every job on the calling thread.
  explicit WorkerPool(int workers);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()); }
  // Calls fn(i) for every i in [0, count) and returns when all are done. The
  // first exception thrown by any call is rethrown here (the remaining items
  // are skipped). Concurrent callers are served one after the other.
  void run(int64_t count, const std::function<void(int64_t)>& fn);

 private:
  void work();

  std::vector<std::thread> threads_;
  std::mutex job_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t count_ = 0, next_ = 0, finished_ = 0;
  uint64_t generation_ = 0;
  int busy_ = 0;
  std::exception_ptr error_;
  bool stopping_ = false;
};

}  // namespace clx
