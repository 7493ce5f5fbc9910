#include "algorithms/sgd.h"

// SgdStrategy needs no code beyond its declaration: the trainer's loop is plain SGD.
