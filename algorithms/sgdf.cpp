#include "algorithms/sgdf.h"

// SgdfStrategy needs no code beyond its declaration: the trainer leaves the
// trunk out of the optimizer when trains_shared_parameters() says so.
