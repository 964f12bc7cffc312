// dist/sweep_mpi.hpp: the PEAR sweep over MPI ranks -- rank 0 coordinates and is the only writer.
//
//   mpirun -n 4 headsweep sweep job.toml      (or srun --mpi=pmix headsweep sweep job.toml)
//
// Every rank loads each model once (with model_read = "node" from a GGUF file read once per node into shared
// memory, dist/node_file.hpp); rank 0 validates the whole job first, creates or resumes each output file
// (the same SweepFile layout as the single-process sweep), and hands out the remaining items (one setting x one
// layer x a head range: job.heads_per_item, or automatically enough for kItemsPerWorker per worker) dynamically: a worker keeps its setting's clean run and gets items of that setting while there are any.
// Results do not depend on the number of ranks: every item is computed alone from the setting's clean run, whose
// values every rank reports and rank 0 checks bit for bit (same binary, same BLAS thread count: 1 per rank unless
// the job says otherwise). The protocol is in dist/protocol.hpp and docs/protocol.md.
#pragma once

#include <cstdint>
#include <vector>

#include <boost/mpi/communicator.hpp>

#include "dist/protocol.hpp"
#include "pear/job.hpp"
#include "pear/run_job.hpp"
#include "pear/sweep_file.hpp"

namespace hs::dist {

struct DistSweepOptions {
    bool progress = true;              // rank 0: progress lines (done/total, items/s, ETA, per-rank busy %)
    double progress_interval_s = 5;
    int32_t coordinator_works = -1;    // rank 0 scores items too: -1 auto (when the world has <= 4 ranks), 0, 1
    int32_t max_batch = 4;             // items per assignment at most (an item: one setting x one layer x a head range)
    int64_t max_items = -1;            // stop after this many items in all (tests: a run that was cut short)
    pear::WriteOptions write;          // rank 0's sweep files: write discipline and test hook
    // A GGUF file read once per node and shared (dist/node_file.hpp): -1 as the job says (model_read), 0 no, 1 yes.
    int32_t share_model_per_node = -1;
    // Each setting's clean run computed once and sent through rank 0 to the other workers that take the setting up
    // (SettingRun::export_state): -1 as the job says (share_clean_runs), 0 every worker computes its own, 1 shared.
    int32_t share_clean_runs = -1;
    // Shared clean-run states travel in messages of at most this many bytes (tests: small, to exercise many pieces).
    int64_t state_piece_bytes = kMaxStatePiece;
};

// Collective over `comm`. Throws hs::Error on every rank (the same message) when anything fails on any rank;
// summaries are returned on rank 0 only.
std::vector<pear::RunSummary> run_distributed_sweep(const pear::SweepJob& job, const boost::mpi::communicator& comm,
                                                    const DistSweepOptions& options = {});

// The BLAS thread count every rank of a distributed sweep uses: job.threads, or 1 when the job leaves it at 0.
int32_t distributed_threads(const pear::SweepJob& job);

// Start-up check for SLURM: when SLURM_NTASKS is set (non-empty), the world must have that many ranks; a
// mis-launch (no srun --mpi=pmix, or a launcher without PMIx) silently makes N singletons otherwise.
void check_world_matches_slurm(const boost::mpi::communicator& comm);

// True when this process was started by an MPI launcher (mpirun / mpiexec / srun): its environment variables.
bool started_by_mpi_launcher();

// The entry of `headsweep sweep`: when the process was started by an MPI launcher (mpirun/mpiexec, srun with
// PMIx, or inside a SLURM step), or when `force` is set, initialises MPI (threads: funneled), checks the launch
// against SLURM_NTASKS and runs the job distributed if the world has more than one rank (or force); rank 0
// prints the summaries. Returns false when the caller should run the single-process sweep instead. is_root is
// false on ranks other than 0, whose errors the caller should not print again (rank 0 prints them).
bool sweep_if_distributed(const pear::SweepJob& job, bool force, bool quiet, bool& is_root);

}  // namespace hs::dist
