// eval/method_rtd.hpp: the RTD methods (`rtd`, `mh-rtd`) and the k-shot ICL baseline (`icl`) as eval Methods.
// Thin adapters: the datastore, the search and the label distribution are in rtd/.
#pragma once

#include <memory>

#include "eval/methods.hpp"

namespace hs::eval {

std::unique_ptr<Method> make_rtd_method(const MethodSettings& s, bool multi_head);
std::unique_ptr<Method> make_icl_method(const MethodSettings& s);

// The model identity stored in (and checked against) datastores for a model_spec as EvalContext carries it:
// "<spec>" or "<spec>|<left method's config>" (compositions).
std::string datastore_model_identity(const std::string& model_spec);
// The datastore path for a task: pattern with {task} replaced.
std::string datastore_path(const std::string& pattern, const std::string& task);

}  // namespace hs::eval
