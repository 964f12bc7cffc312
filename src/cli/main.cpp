// headsweep: find and re-weight the attention heads of real language models.
#include <cstdio>
#include <exception>

#include "backend/cpu/cpu_runtime.hpp"
#include "cli/commands.hpp"
#include "util/error.hpp"

int main(int argc, char** argv) {
    hs::prepare_cpu_runtime(argv);  // first: may re-execute with the BLAS core this CPU allows
    CLI::App app{"headsweep " HEADSWEEP_VERSION ": find and re-weight the attention heads of language models"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "headsweep " HEADSWEEP_VERSION);
    hs::cli::add_info_command(app);
    hs::cli::add_write_random_command(app);
    hs::cli::add_generate_command(app);
    hs::cli::add_score_command(app);
    hs::cli::add_sweep_command(app);
    hs::cli::add_train_command(app);
    hs::cli::add_export_command(app);
    hs::cli::add_rank_heads_command(app);
    hs::cli::add_eval_command(app);
    hs::cli::add_datastore_command(app);
    hs::cli::add_compare_command(app);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const hs::Error& e) {
        std::fprintf(stderr, "headsweep: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "headsweep: internal error: %s\n", e.what());
        return 2;
    }
    return 0;
}
