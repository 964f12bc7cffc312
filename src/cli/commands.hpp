// cli/commands.hpp: the subcommands of the headsweep tool. Each registers itself on the app; running one throws
// hs::Error on bad input (main prints it as one line and exits 1).
#pragma once

#include <CLI/CLI.hpp>

namespace hs::cli {

void add_info_command(CLI::App& app);
void add_write_random_command(CLI::App& app);  // cmd_model.cpp
void add_generate_command(CLI::App& app);
void add_score_command(CLI::App& app);
void add_sweep_command(CLI::App& app);  // cmd_sweep.cpp
void add_train_command(CLI::App& app);   // cmd_train.cpp
void add_export_command(CLI::App& app);  // cmd_export.cpp
void add_rank_heads_command(CLI::App& app);  // cmd_export.cpp
void add_eval_command(CLI::App& app);   // cmd_eval.cpp
void add_datastore_command(CLI::App& app);  // cmd_datastore.cpp (RTD)
void add_compare_command(CLI::App& app);    // cmd_compare.cpp

// Default model path (relative to the working directory) used when --model is not given.
inline constexpr const char* kDefaultModel = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

}  // namespace hs::cli
