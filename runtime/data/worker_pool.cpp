#include "runtime/data/worker_pool.h"

namespace clx {

WorkerPool::WorkerPool(int workers) {
  for (int w = 0; w < workers; ++w) threads_.emplace_back([this] { work(); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& thread : threads_) thread.join();
}

void WorkerPool::run(int64_t count, const std::function<void(int64_t)>& fn) {
  if (count <= 0) return;
  if (threads_.empty()) {
    for (int64_t i = 0; i < count; ++i) fn(i);
    return;
  }
  std::lock_guard<std::mutex> one_job(job_mutex_);
  std::unique_lock<std::mutex> lock(mutex_);
  job_ = &fn;
  count_ = count;
  next_ = 0;
  finished_ = 0;
  error_ = nullptr;
  ++generation_;
  wake_.notify_all();
  // Done when every item is accounted for and no worker still holds the job.
  done_.wait(lock, [this] { return finished_ == count_ && busy_ == 0; });
  job_ = nullptr;
  if (error_) std::rethrow_exception(error_);
}

void WorkerPool::work() {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || (generation_ != seen && job_ != nullptr); });
    if (stopping_) return;
    seen = generation_;
    ++busy_;
    while (next_ < count_) {
      const int64_t item = next_++;
      const auto* job = job_;
      lock.unlock();
      std::exception_ptr failure;
      try {
        (*job)(item);
      } catch (...) {
        failure = std::current_exception();
      }
      lock.lock();
      ++finished_;
      if (failure) {
        if (!error_) error_ = failure;
        // Skip the rest: count them as finished so run() returns.
        finished_ += count_ - next_;
        next_ = count_;
      }
    }
    --busy_;
    if (finished_ == count_ && busy_ == 0) done_.notify_all();
  }
}

}  // namespace clx
