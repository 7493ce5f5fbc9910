#include "algorithms/finetune.h"

// FinetuneStrategy needs no code beyond its declaration: it is the trainer's
// loop with one head per task.
