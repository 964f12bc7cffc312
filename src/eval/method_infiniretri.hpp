// eval/method_infiniretri.hpp: the `infiniretri` evaluation method -- a thin adapter from an Example (its context
// and question) to the reading loop of infiniretri/infiniretri.hpp, then a greedy answer from the cache alone.
#pragma once

#include <memory>

#include "eval/methods.hpp"

namespace hs::eval {

std::unique_ptr<Method> make_infiniretri(const MethodSettings& s);

}  // namespace hs::eval
