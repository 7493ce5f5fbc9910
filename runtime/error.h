#pragma once
// Error types shared by every layer.
//
// Two kinds of failure need different handling in a multi-rank job:
//  - Error: something went wrong on this rank. If the other ranks may be
//    waiting in a collective, the job must be aborted (see launch/train.cpp).
//  - CollectiveError: every rank has agreed that the job must stop (the same
//    exception is thrown on all ranks), so each rank can exit cleanly and only
//    rank 0 prints the message.
#include <stdexcept>
#include <string>

namespace clx {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class CollectiveError : public Error {
 public:
  using Error::Error;
};

}  // namespace clx
