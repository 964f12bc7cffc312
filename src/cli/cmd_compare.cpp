// headsweep compare: rank correlation, top-K Jaccard, largest score changes and top-K stability between sweep
// files (pear/compare.hpp).
#include <cstdio>
#include <memory>

#include "cli/commands.hpp"
#include "pear/compare.hpp"

namespace hs::cli {

void add_compare_command(CLI::App& app) {
    struct Opts {
        std::vector<std::string> files;
        pear::CompareOptions options;
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    CLI::App* cmd = app.add_subcommand(
        "compare", "Compare sweep files: Spearman rank correlation, top-K Jaccard, largest score changes, stability");
    cmd->add_option("files", o->files, "two or more sweep files (.h5) of one model shape and settings")
        ->required()
        ->expected(2, -1);
    cmd->add_option("-k,--top-k", o->options.top_k, "K (0: the files' own top_k)")->capture_default_str();
    cmd->add_option("--changes", o->options.changes, "largest changes to list per pair")->capture_default_str();
    cmd->add_flag("--allow-modes", o->options.allow_modes, "compare files of different scoring modes");
    cmd->add_flag("--json", o->json, "print one JSON line instead of the table");
    cmd->callback([o] {
        const pear::CompareResult r = pear::compare_sweeps(o->files, o->options);
        if (o->json)
            std::printf("%s\n", pear::compare_json(r).c_str());
        else
            std::printf("%s", pear::compare_table(r).c_str());
    });
}

}  // namespace hs::cli
