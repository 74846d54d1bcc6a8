// Everything of the core layer in one include: tensors, ops, autograd, RNG, gradcheck, profiler.
#pragma once
#include "core/autocast.h"
#include "core/autograd.h"
#include "core/cuda_memory.h"
#include "core/gradcheck.h"
#include "core/kernel_versions.h"
#include "core/io/safetensors.h"
#include "core/ops.h"
#include "core/profile.h"
#include "core/rng.h"
#include "core/tensor.h"
